//! Nearest neighbours among track embeddings: a hierarchical navigable small-world graph
//! (HNSW, from `hnsw_rs`), so that finding a track's closest tracks costs a few hundred
//! comparisons rather than one per track in the catalog. Tracks are added as they are
//! published; the graph keeps no removals, so callers skip tracks that are gone.

use hnsw_rs::{anndists::dist::Distance, hnsw::Hnsw};

use super::als::dot;

/// Neighbours each node keeps per layer, and the breadth of the searches that build the
/// graph and query it: the usual settings for a few hundred dimensions, which find well
/// over nine in ten of the true nearest neighbours.
const CONNECTIONS: usize = 24;
const LAYERS: usize = 16;
const BUILD_BREADTH: usize = 100;
const SEARCH_BREADTH: usize = 64;

/// The cosine distance between unit vectors: 1 − a · b. The library's own cosine divides
/// by both norms, in a sequential double-precision loop that does not vectorise, and its
/// dot-product distance asserts a result that rounding can break (a vector with itself);
/// graph searches spend nearly all their time here.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

pub struct SimilarIndex {
    graph: Hnsw<'static, f32, UnitCosine>,
    len: usize,
}

impl std::fmt::Debug for SimilarIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimilarIndex").field("len", &self.len).finish()
    }
}

impl SimilarIndex {
    /// An empty index expecting about `capacity` vectors (it grows past that, less well).
    pub fn new(capacity: usize) -> Self {
        let graph = Hnsw::new(CONNECTIONS, capacity.max(1_000), LAYERS, BUILD_BREADTH, UnitCosine);
        Self { graph, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// An index of every non-zero row of `vectors`, by row number, built on every core.
    pub fn build(vectors: &super::als::Vectors) -> Self {
        let present: Vec<(usize, &[f32])> = (0..vectors.len())
            .map(|row| (row, vectors.get(row)))
            .filter(|(_, vector)| vector.iter().any(|v| *v != 0.0))
            .collect();
        let mut index = Self::new(vectors.len());
        index.insert_all(&present);
        index
    }

    /// Adds many vectors at once, on every core: how an index is rebuilt at start.
    pub fn insert_all(&mut self, vectors: &[(usize, &[f32])]) {
        self.graph.parallel_insert_slice(&vectors.iter().map(|(id, v)| (*v, *id)).collect());
        self.len += vectors.len();
    }

    /// Adds `vector` (unit length, as every vector here must be) under `id`.
    pub fn insert(&mut self, id: usize, vector: &[f32]) {
        self.graph.insert((vector, id));
        self.len += 1;
    }

    /// The `count` nearest ids to `vector` with their cosine similarity, most similar first.
    pub fn nearest(&self, vector: &[f32], count: usize) -> Vec<(usize, f32)> {
        if self.is_empty() || count == 0 {
            return Vec::new();
        }
        self.graph
            .search(vector, count, SEARCH_BREADTH.max(count))
            .into_iter()
            .map(|neighbour| (neighbour.d_id, 1.0 - neighbour.distance))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng as _, SeedableRng as _, rngs::StdRng};

    use super::*;

    fn unit(rng: &mut StdRng, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim).map(|_| rng.r#gen::<f32>() - 0.5).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }

    #[test]
    fn neighbours_are_found_as_a_full_scan_finds_them() {
        let mut rng = StdRng::seed_from_u64(3);
        let vectors: Vec<Vec<f32>> = (0..2_000).map(|_| unit(&mut rng, 32)).collect();
        let mut index = SimilarIndex::new(vectors.len());
        let (first, rest) = vectors.split_at(1_000);
        for (id, vector) in first.iter().enumerate() {
            index.insert(id, vector);
        }
        let rest: Vec<(usize, &[f32])> =
            rest.iter().enumerate().map(|(i, v)| (1_000 + i, v.as_slice())).collect();
        index.insert_all(&rest);
        assert_eq!(index.len(), 2_000);
        let mut found = 0;
        for query in vectors.iter().take(50) {
            let mut exact: Vec<(usize, f32)> = vectors
                .iter()
                .enumerate()
                .map(|(id, v)| (id, v.iter().zip(query).map(|(a, b)| a * b).sum()))
                .collect();
            exact.sort_by(|a, b| b.1.total_cmp(&a.1));
            let nearest = index.nearest(query, 10);
            assert_eq!(nearest[0].0, exact[0].0, "a vector is its own nearest");
            assert!((nearest[0].1 - 1.0).abs() < 1e-4);
            found +=
                nearest.iter().filter(|(id, _)| exact[..10].iter().any(|e| e.0 == *id)).count();
        }
        assert!(found as f64 / 500.0 >= 0.9, "recall {found}/500");
    }

    #[test]
    fn an_empty_index_finds_nothing() {
        assert!(SimilarIndex::new(10).nearest(&[1.0, 0.0], 5).is_empty());
    }
}
