//! Implicit-feedback matrix factorisation: alternating least squares after Hu, Koren and
//! Volinsky (2008), each least-squares problem solved approximately by a few steps of
//! conjugate gradient started from the last solution (Takács, Pilászy and Tikk 2011), the
//! method the `implicit` library uses by default.
//!
//! Every user u and item i gets a vector of `factors` numbers, x_u and y_i, so that
//! x_u · y_i predicts whether u would choose i. The loss weighs every (user, item) pair:
//! pairs with feedback count with their confidence c_ui > 1 towards a preference of 1,
//! every other pair with confidence 1 towards 0. The unobserved pairs are all the same,
//! so their sum is one `factors × factors` Gram matrix per half-iteration, and a user's
//! solve costs time in proportion to the items they touched.

use multiversion::{multiversion, target::target_cfg_f};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use rayon::prelude::*;

/// How the factorisation is trained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlsConfig {
    pub factors: usize,
    pub iterations: usize,
    /// λ, the weight of ‖x‖² and ‖y‖² in the loss.
    pub regularization: f32,
    /// Conjugate-gradient steps per vector per half-iteration.
    pub cg_steps: usize,
    pub seed: u64,
}

impl Default for AlsConfig {
    fn default() -> Self {
        Self { factors: 64, iterations: 15, regularization: 0.01, cg_steps: 3, seed: 42 }
    }
}

/// A sparse matrix of confidences by row (compressed sparse rows): row r's entries are
/// `columns[starts[r]..starts[r + 1]]` with `confidences` alongside.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sparse {
    pub rows: usize,
    pub columns_count: usize,
    starts: Vec<usize>,
    columns: Vec<u32>,
    confidences: Vec<f32>,
}

impl Sparse {
    /// From `(row, column, confidence)` triples in any order; a pair given twice has its
    /// confidences added.
    pub fn from_triples(rows: usize, columns: usize, triples: &[(u32, u32, f32)]) -> Self {
        let mut sorted = triples.to_vec();
        sorted.sort_unstable_by_key(|(row, column, _)| (*row, *column));
        let mut matrix = Self {
            rows,
            columns_count: columns,
            starts: vec![0; rows + 1],
            columns: Vec::with_capacity(sorted.len()),
            confidences: Vec::with_capacity(sorted.len()),
        };
        let mut last = None;
        for (row, column, confidence) in sorted {
            if last == Some((row, column)) {
                *matrix.confidences.last_mut().expect("a previous entry") += confidence;
                continue;
            }
            last = Some((row, column));
            matrix.columns.push(column);
            matrix.confidences.push(confidence);
            matrix.starts[row as usize + 1] += 1;
        }
        for row in 0..rows {
            matrix.starts[row + 1] += matrix.starts[row];
        }
        matrix
    }

    pub fn entries(&self) -> usize {
        self.columns.len()
    }

    /// Row `row`'s columns and confidences.
    pub fn row(&self, row: usize) -> (&[u32], &[f32]) {
        let range = self.starts[row]..self.starts[row + 1];
        (&self.columns[range.clone()], &self.confidences[range])
    }

    /// The same entries by column.
    pub fn transpose(&self) -> Self {
        let mut triples = Vec::with_capacity(self.entries());
        for row in 0..self.rows {
            let (columns, confidences) = self.row(row);
            for (column, confidence) in columns.iter().zip(confidences) {
                triples.push((*column, row as u32, *confidence));
            }
        }
        Self::from_triples(self.columns_count, self.rows, &triples)
    }
}

/// Vectors of one length, one after another.
#[derive(Debug, Clone, PartialEq)]
pub struct Vectors {
    pub dim: usize,
    pub values: Vec<f32>,
}

impl Vectors {
    pub fn zeros(count: usize, dim: usize) -> Self {
        Self { dim, values: vec![0.0; count * dim] }
    }

    fn random(count: usize, dim: usize, rng: &mut StdRng) -> Self {
        // Small, as `implicit` starts: the first half-iteration then sets the scale.
        let scale = 0.01;
        Self { dim, values: (0..count * dim).map(|_| rng.r#gen::<f32>() * scale).collect() }
    }

    pub fn len(&self) -> usize {
        self.values.len() / self.dim.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn get(&self, index: usize) -> &[f32] {
        &self.values[index * self.dim..][..self.dim]
    }

    /// Σ v vᵀ over every vector, plus λ on the diagonal: `dim × dim`, by rows.
    fn gram(&self, regularization: f32) -> Vec<f32> {
        let dim = self.dim;
        let chunk = 4096;
        let mut gram = self
            .values
            .par_chunks(chunk * dim)
            .map(|vectors| {
                let mut partial = vec![0f32; dim * dim];
                for vector in vectors.chunks_exact(dim) {
                    for (row, value) in vector.iter().enumerate() {
                        axpy::<false>(*value, vector, &mut partial[row * dim..][..dim]);
                    }
                }
                partial
            })
            .reduce(
                || vec![0f32; dim * dim],
                |mut sum, partial| {
                    sum.iter_mut().zip(&partial).for_each(|(s, p)| *s += p);
                    sum
                },
            );
        for i in 0..dim {
            gram[i * dim + i] += regularization;
        }
        gram
    }
}

/// The trained vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Factors {
    pub users: Vectors,
    pub items: Vectors,
    pub regularization: f32,
    /// YᵀY + λI of the item vectors, which every fold-in needs: computed once.
    item_gram: Vec<f32>,
}

impl Factors {
    pub fn new(users: Vectors, items: Vectors, regularization: f32) -> Self {
        let item_gram = items.gram(regularization);
        Self { users, items, regularization, item_gram }
    }

    /// How much `user` would like `item`.
    pub fn score(&self, user: usize, item: usize) -> f32 {
        dot(self.users.get(user), self.items.get(item))
    }

    /// A vector for someone not in the training (or whose feedback changed since): the
    /// least-squares solution against the fixed item vectors, the same step training
    /// takes, run to convergence. Costs time in proportion to their feedback: this is how
    /// new plays count within seconds, without retraining.
    pub fn fold_in(&self, feedback: &[(u32, f32)]) -> Vec<f32> {
        let dim = self.items.dim;
        let (columns, confidences): (Vec<u32>, Vec<f32>) = feedback
            .iter()
            .filter(|(item, _)| (*item as usize) < self.items.len())
            .copied()
            .unzip();
        let mut x = vec![0f32; dim];
        solve(&self.item_gram, &self.items, &columns, &confidences, &mut x, dim.max(8));
        x
    }
}

/// Trains user and item vectors from `feedback`, users by rows, items by columns.
pub fn train(feedback: &Sparse, config: &AlsConfig) -> Factors {
    let by_item = feedback.transpose();
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut users = Vectors::random(feedback.rows, config.factors, &mut rng);
    let mut items = Vectors::random(feedback.columns_count, config.factors, &mut rng);
    for _ in 0..config.iterations {
        half_iteration(feedback, &items, &mut users, config);
        half_iteration(&by_item, &users, &mut items, config);
    }
    Factors::new(users, items, config.regularization)
}

/// Solves every row's vector in `solved` against the fixed vectors `fixed`.
fn half_iteration(feedback: &Sparse, fixed: &Vectors, solved: &mut Vectors, config: &AlsConfig) {
    let dim = config.factors;
    let gram = fixed.gram(config.regularization);
    solved.values.par_chunks_mut(dim).enumerate().with_min_len(64).for_each(|(row, x)| {
        let (columns, confidences) = feedback.row(row);
        solve(&gram, fixed, columns, confidences, x, config.cg_steps);
    });
}

/// Improves `x` towards the minimiser of Σ_i c_i (1 − x·y_i)² + Σ_{i unobserved} (x·y_i)²
/// + λ‖x‖² by `steps` of conjugate gradient. The system is
/// (YᵀY + λI + Σ_i (c_i − 1) y_i y_iᵀ) x = Σ_i c_i y_i.
#[multiversion(targets = "simd")]
fn solve(
    gram: &[f32],
    fixed: &Vectors,
    columns: &[u32],
    confidences: &[f32],
    x: &mut [f32],
    steps: usize,
) {
    // Fused multiply-adds where the CPU has them: one instruction, not two.
    const FMA: bool = target_cfg_f!(target_feature = "fma");
    let dim = x.len();
    let mut residual = vec![0f32; dim];
    // r = b − A x.
    matvec::<FMA>(gram, x, &mut residual);
    residual.iter_mut().for_each(|value| *value = -*value);
    for (column, confidence) in columns.iter().zip(confidences) {
        let y = fixed.get(*column as usize);
        axpy::<FMA>(confidence - (confidence - 1.0) * dot_with::<FMA>(y, x), y, &mut residual);
    }
    let mut direction = residual.clone();
    let mut product = vec![0f32; dim];
    let mut old = dot_with::<FMA>(&residual, &residual);
    for _ in 0..steps {
        if old < 1e-20 {
            break;
        }
        matvec::<FMA>(gram, &direction, &mut product);
        for (column, confidence) in columns.iter().zip(confidences) {
            let y = fixed.get(*column as usize);
            axpy::<FMA>((confidence - 1.0) * dot_with::<FMA>(y, &direction), y, &mut product);
        }
        let step = old / dot_with::<FMA>(&direction, &product);
        axpy::<FMA>(step, &direction, x);
        axpy::<FMA>(-step, &product, &mut residual);
        let new = dot_with::<FMA>(&residual, &residual);
        let keep = new / old;
        for (d, r) in direction.iter_mut().zip(&residual) {
            *d = r + keep * *d;
        }
        old = new;
    }
}

/// `out` ← M v, M square by rows.
#[inline(always)]
fn matvec<const FMA: bool>(matrix: &[f32], v: &[f32], out: &mut [f32]) {
    for (row, out) in matrix.chunks_exact(v.len()).zip(out.iter_mut()) {
        *out = dot_with::<FMA>(row, v);
    }
}

/// a · b + c, fused when the caller's target has the instruction (a fused multiply-add
/// without it is a slow library call).
#[inline(always)]
fn multiply_add<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// a · b.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_with::<false>(a, b)
}

/// Sixteen lanes of partial sums, so that the loop vectorises.
#[inline(always)]
fn dot_with<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut sums = [0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(a, b)| a * b).sum();
    for (a, b) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            sums[lane] = multiply_add::<FMA>(a[lane], b[lane], sums[lane]);
        }
    }
    // Halving, rather than left to right, so that the sum vectorises too.
    let mut width = LANES / 2;
    while width > 0 {
        for lane in 0..width {
            sums[lane] += sums[lane + width];
        }
        width /= 2;
    }
    sums[0] + tail
}

/// `y` ← `y` + a `x`.
#[inline(always)]
fn axpy<const FMA: bool>(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y = multiply_add::<FMA>(a, *x, *y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_matrix_adds_repeated_pairs_and_transposes() {
        let matrix =
            Sparse::from_triples(3, 4, &[(2, 1, 1.0), (0, 3, 2.0), (2, 1, 0.5), (0, 0, 1.0)]);
        assert_eq!(matrix.entries(), 3);
        assert_eq!(matrix.row(0), (&[0, 3][..], &[1.0, 2.0][..]));
        assert_eq!(matrix.row(1), (&[][..], &[][..]));
        assert_eq!(matrix.row(2), (&[1][..], &[1.5][..]));
        let transposed = matrix.transpose();
        assert_eq!((transposed.rows, transposed.columns_count), (4, 3));
        assert_eq!(transposed.row(1), (&[2][..], &[1.5][..]));
        assert_eq!(transposed.transpose(), matrix);
    }

    #[test]
    fn dot_products_of_any_length() {
        for len in [0, 1, 15, 16, 17, 64, 100] {
            let a: Vec<f32> = (0..len).map(|i| i as f32 * 0.5).collect();
            let b: Vec<f32> = (0..len).map(|i| 1.0 - i as f32 * 0.01).collect();
            let expected: f32 = a.iter().zip(&b).map(|(a, b)| a * b).sum();
            assert!((dot(&a, &b) - expected).abs() <= 1e-3 * expected.abs().max(1.0), "{len}");
        }
    }

    /// The exact least-squares solution by Gaussian elimination, for comparison.
    fn exact(fixed: &Vectors, feedback: &[(u32, f32)], regularization: f32) -> Vec<f32> {
        let dim = fixed.dim;
        let mut a = fixed.gram(regularization);
        let mut b = vec![0f32; dim];
        for (item, confidence) in feedback {
            let y = fixed.get(*item as usize);
            for r in 0..dim {
                b[r] += confidence * y[r];
                for c in 0..dim {
                    a[r * dim + c] += (confidence - 1.0) * y[r] * y[c];
                }
            }
        }
        for pivot in 0..dim {
            for row in pivot + 1..dim {
                let factor = a[row * dim + pivot] / a[pivot * dim + pivot];
                for c in pivot..dim {
                    a[row * dim + c] -= factor * a[pivot * dim + c];
                }
                b[row] -= factor * b[pivot];
            }
        }
        let mut x = vec![0f32; dim];
        for row in (0..dim).rev() {
            let rest: f32 = (row + 1..dim).map(|c| a[row * dim + c] * x[c]).sum();
            x[row] = (b[row] - rest) / a[row * dim + row];
        }
        x
    }

    #[test]
    fn folding_in_solves_the_least_squares_problem() {
        let mut rng = StdRng::seed_from_u64(7);
        let items = Vectors::random(50, 8, &mut rng);
        let items = Vectors { dim: 8, values: items.values.iter().map(|v| v * 100.0).collect() };
        let factors = Factors::new(Vectors::zeros(0, 8), items, 0.1);
        let feedback = [(3, 5.0), (10, 2.0), (42, 9.0)];
        let ours = factors.fold_in(&feedback);
        let theirs = exact(&factors.items, &feedback, 0.1);
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-3 * b.abs().max(1.0), "{ours:?} against {theirs:?}");
        }
    }

    #[test]
    fn training_offers_each_user_more_of_their_own_kind() {
        // Two groups of users, each choosing among its own half of the items.
        let mut triples = Vec::new();
        let mut rng = StdRng::seed_from_u64(1);
        for user in 0..40u32 {
            let half = user % 2;
            for _ in 0..6 {
                let item = rng.gen_range(0..10u32) * 2 + half;
                triples.push((user, item, 1.0 + 4.0 * rng.r#gen::<f32>()));
            }
        }
        let feedback = Sparse::from_triples(40, 20, &triples);
        // As many factors as there are tastes: the model cannot learn each user by heart.
        let config = AlsConfig { factors: 2, regularization: 0.1, ..AlsConfig::default() };
        let factors = train(&feedback, &config);
        for user in 0..40 {
            let (seen, _) = feedback.row(user);
            let best_unseen = (0..20u32)
                .filter(|item| !seen.contains(item))
                .max_by(|a, b| {
                    factors.score(user, *a as usize).total_cmp(&factors.score(user, *b as usize))
                })
                .expect("unseen items");
            assert_eq!(best_unseen % 2, user as u32 % 2, "user {user} was offered the other half");
        }
    }
}
