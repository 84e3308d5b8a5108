//! What to recommend to someone, and what is like a track: the collaborative factors
//! (what people with similar listening chose) blended with the content embeddings (what
//! sounds alike on paper), by how much feedback there is to go on. A listener with a long
//! history is recommended mostly by the factors; a new one, or a track nobody has played
//! yet, mostly by the embeddings — the cold start. Tracks are dense indexes here; the
//! service maps them to ids.

use super::{
    als::{Factors, Vectors, dot},
    eval::top_scored,
    similar::SimilarIndex,
};

/// Feedback this many items strong counts as much as the content does.
const HALF_WEIGHT_FEEDBACK: f32 = 5.0;
/// Candidates gathered from each side before blending.
const CANDIDATES: usize = 200;

/// One piece of a listener's feedback on a track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Feedback {
    pub track: u32,
    /// How strongly it counts (1 + completion-weighted plays, more for a like).
    pub confidence: f32,
    pub liked: bool,
    /// Played lately: not recommended again unless asked.
    pub recent: bool,
}

/// Why a track is recommended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Like this track, which the listener liked.
    Liked(u32),
    /// Like this track, which the listener played.
    Played(u32),
    /// Nothing to go on: it is what most people play.
    Popular,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recommendation {
    pub track: u32,
    pub score: f32,
    pub reason: Reason,
}

/// Everything recommendations are computed from, at one moment.
pub struct Recommender {
    /// Trained factors; tracks published since have none (indexes past `items.len()`).
    factors: Option<Factors>,
    /// Unit-length embeddings by track, zero where a track has none yet.
    embeddings: Vectors,
    /// Built apart (it takes a while for a large catalog) and installed when ready; until
    /// then neighbours are found by comparing with every track.
    index: Option<SimilarIndex>,
    /// How many listeners chose each track.
    popularity: Vec<f32>,
}

impl std::fmt::Debug for Recommender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recommender").field("tracks", &self.tracks()).finish_non_exhaustive()
    }
}

/// The weight of the collaborative score for feedback of `count` items: 0 with none,
/// half at [`HALF_WEIGHT_FEEDBACK`], approaching 1.
pub fn collaborative_weight(count: usize) -> f32 {
    count as f32 / (count as f32 + HALF_WEIGHT_FEEDBACK)
}

impl Recommender {
    /// From embeddings by track (`None` where a track has none yet), trained factors if
    /// any, and each track's number of listeners; without a neighbour index until one is
    /// installed ([`Recommender::build_index`], [`Recommender::install_index`]).
    pub fn new(
        embeddings: &[Option<Vec<f32>>],
        dim: usize,
        factors: Option<Factors>,
        popularity: Vec<f32>,
    ) -> Self {
        let mut vectors = Vectors::zeros(embeddings.len(), dim);
        for (track, embedding) in embeddings.iter().enumerate() {
            if let Some(embedding) = embedding.as_ref().filter(|e| e.len() == dim) {
                vectors.values[track * dim..][..dim].copy_from_slice(embedding);
            }
        }
        let mut recommender = Self { factors, embeddings: vectors, index: None, popularity };
        recommender.popularity.resize(recommender.tracks(), 0.0);
        recommender
    }

    pub fn tracks(&self) -> usize {
        self.embeddings.len()
    }

    /// Every track's embedding (zero where it has none), to build an index from apart.
    pub fn embeddings(&self) -> &Vectors {
        &self.embeddings
    }

    /// Builds the neighbour index here and now.
    pub fn build_index(&mut self) {
        let index = SimilarIndex::build(&self.embeddings);
        let covered = self.tracks();
        self.install_index(index, covered);
    }

    /// Installs an index built apart from the first `covered` tracks' embeddings; the
    /// tracks added or embedded since join it now.
    pub fn install_index(&mut self, mut index: SimilarIndex, covered: usize) {
        for track in covered..self.tracks() {
            if let Some(embedding) = self.embedding(track as u32) {
                index.insert(track, embedding);
            }
        }
        self.index = Some(index);
    }

    pub fn has_index(&self) -> bool {
        self.index.is_some()
    }

    /// Newly trained factors (for the first tracks; later ones have none yet) and each
    /// track's number of listeners.
    pub fn set_factors(&mut self, factors: Option<Factors>, mut popularity: Vec<f32>) {
        popularity.resize(self.tracks(), 0.0);
        self.factors = factors;
        self.popularity = popularity;
    }

    pub fn has_factors(&self) -> bool {
        self.factors.is_some()
    }

    /// Adds a newly published track with its embedding, if it has one yet (its index is
    /// the next one).
    pub fn add_track(&mut self, embedding: Option<&[f32]>) -> u32 {
        let track = self.tracks();
        self.embeddings.values.extend(std::iter::repeat_n(0.0, self.embeddings.dim));
        self.popularity.push(0.0);
        if let Some(embedding) = embedding {
            self.set_embedding(track as u32, embedding);
        }
        track as u32
    }

    /// Gives a track its embedding (computed late, or anew after its metadata changed).
    /// An index keeps the old one too; scores always use the new.
    pub fn set_embedding(&mut self, track: u32, embedding: &[f32]) {
        let dim = self.embeddings.dim;
        if embedding.len() != dim || track as usize >= self.tracks() {
            return;
        }
        self.embeddings.values[track as usize * dim..][..dim].copy_from_slice(embedding);
        if let Some(index) = &mut self.index {
            index.insert(track as usize, embedding);
        }
    }

    /// The `count` tracks whose embeddings are nearest `vector`: by the index once there
    /// is one, else by comparing with each.
    fn nearest(&self, vector: &[f32], count: usize) -> Vec<u32> {
        match &self.index {
            Some(index) => {
                index.nearest(vector, count).into_iter().map(|(t, _)| t as u32).collect()
            }
            None => best(
                (0..self.tracks() as u32)
                    .filter_map(|t| self.embedding(t).map(|e| (t, dot(vector, e)))),
                count,
            ),
        }
    }

    fn embedding(&self, track: u32) -> Option<&[f32]> {
        let vector = self.embeddings.get(track as usize);
        vector.iter().any(|v| *v != 0.0).then_some(vector)
    }

    fn item_factors(&self, track: u32) -> Option<&[f32]> {
        let factors = self.factors.as_ref()?;
        ((track as usize) < factors.items.len()).then(|| factors.items.get(track as usize))
    }

    /// The top `limit` tracks for a listener with this feedback, best first; tracks they
    /// liked or played lately are left out unless `include_known`. Their collaborative
    /// vector is folded in from the feedback against the trained factors (so new plays
    /// count at once), their content profile is the confidence-weighted mean of the
    /// embeddings of what they chose.
    pub fn recommend(
        &self,
        feedback: &[Feedback],
        limit: usize,
        include_known: bool,
    ) -> Vec<Recommendation> {
        let excluded = |track: u32| {
            !include_known && feedback.iter().any(|f| f.track == track && (f.liked || f.recent))
        };
        let user = self.factors.as_ref().filter(|_| !feedback.is_empty()).map(|factors| {
            let pairs: Vec<(u32, f32)> = feedback.iter().map(|f| (f.track, f.confidence)).collect();
            factors.fold_in(&pairs)
        });
        let profile = self.profile(feedback);
        if user.is_none() && profile.is_none() {
            return self.popular(limit, &excluded);
        }
        let weight = if user.is_some() { collaborative_weight(feedback.len()) } else { 0.0 };
        let mut candidates: Vec<u32> = Vec::new();
        if let Some(profile) = &profile {
            candidates.extend(self.nearest(profile, CANDIDATES));
        }
        if let (Some(user), Some(factors)) = (&user, &self.factors) {
            let scores =
                (0..factors.items.len()).map(|t| (t as u32, dot(user, factors.items.get(t))));
            candidates.extend(best(scores, CANDIDATES));
        }
        candidates.sort_unstable();
        candidates.dedup();
        let score = |track: u32| {
            let collaborative = user
                .as_ref()
                .zip(self.item_factors(track))
                .map_or(0.0, |(user, item)| dot(user, item));
            let content = profile
                .as_ref()
                .zip(self.embedding(track))
                .map_or(0.0, |(profile, embedding)| dot(profile, embedding));
            weight * collaborative + (1.0 - weight) * content
        };
        let candidates = candidates.into_iter().filter(|t| !excluded(*t)).map(|t| (t, score(t)));
        top_scored(candidates, limit)
            .into_iter()
            .map(|(track, score)| Recommendation {
                track,
                score,
                reason: self.reason(track, feedback),
            })
            .collect()
    }

    /// The normalised, confidence-weighted mean of the embeddings of what was chosen.
    fn profile(&self, feedback: &[Feedback]) -> Option<Vec<f32>> {
        let mut profile = vec![0f32; self.embeddings.dim];
        for f in feedback {
            if let Some(embedding) = self.embedding(f.track) {
                for (p, e) in profile.iter_mut().zip(embedding) {
                    *p += f.confidence * e;
                }
            }
        }
        let norm = dot(&profile, &profile).sqrt();
        (norm > 0.0).then(|| profile.into_iter().map(|p| p / norm).collect())
    }

    /// The track of the listener's feedback most like `track`.
    fn reason(&self, track: u32, feedback: &[Feedback]) -> Reason {
        let likeness = |other: u32| {
            let content = self.embedding(track).zip(self.embedding(other)).map(|(a, b)| dot(a, b));
            let collaborative =
                self.item_factors(track).zip(self.item_factors(other)).map(|(a, b)| {
                    dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt()).max(f32::MIN_POSITIVE)
                });
            content.unwrap_or(0.0).max(collaborative.unwrap_or(0.0))
        };
        feedback
            .iter()
            .filter(|f| f.track != track)
            .max_by(|a, b| likeness(a.track).total_cmp(&likeness(b.track)))
            .map_or(Reason::Popular, |f| {
                if f.liked { Reason::Liked(f.track) } else { Reason::Played(f.track) }
            })
    }

    fn popular(&self, limit: usize, excluded: &dyn Fn(u32) -> bool) -> Vec<Recommendation> {
        let top = self.popularity.iter().copied().max_by(f32::total_cmp).unwrap_or(0.0).max(1.0);
        let tracks = self
            .popularity
            .iter()
            .enumerate()
            .map(|(t, p)| (t as u32, *p))
            .filter(|(t, _)| !excluded(*t));
        top_scored(tracks, limit)
            .into_iter()
            .map(|(track, listeners)| Recommendation {
                track,
                score: listeners / top,
                reason: Reason::Popular,
            })
            .collect()
    }

    /// The `limit` tracks most like `track`, best first: embedding neighbours and
    /// collaborative neighbours, blended by how much listening the track has.
    pub fn similar(&self, track: u32, limit: usize) -> Vec<(u32, f32)> {
        let embedding = self.embedding(track);
        let item = self.item_factors(track);
        let unit = |v: &[f32]| -> Vec<f32> {
            let norm = dot(v, v).sqrt().max(f32::MIN_POSITIVE);
            v.iter().map(|x| x / norm).collect()
        };
        let item = item.map(unit);
        let listeners = self.popularity.get(track as usize).copied().unwrap_or(0.0) as usize;
        let weight = if item.is_some() { collaborative_weight(listeners) } else { 0.0 };
        let mut candidates: Vec<u32> = Vec::new();
        if let Some(embedding) = embedding {
            candidates.extend(self.nearest(embedding, CANDIDATES));
        }
        if let (Some(item), Some(factors)) = (&item, &self.factors) {
            let scores = (0..factors.items.len()).map(|t| {
                let other = factors.items.get(t);
                (t as u32, dot(item, other) / dot(other, other).sqrt().max(f32::MIN_POSITIVE))
            });
            candidates.extend(best(scores, CANDIDATES));
        }
        candidates.sort_unstable();
        candidates.dedup();
        let score = |other: u32| {
            let content = embedding.zip(self.embedding(other)).map_or(0.0, |(a, b)| dot(a, b));
            let collaborative = item
                .as_ref()
                .zip(self.item_factors(other))
                .map_or(0.0, |(a, b)| dot(a, b) / dot(b, b).sqrt().max(f32::MIN_POSITIVE));
            weight * collaborative + (1.0 - weight) * content
        };
        top_scored(candidates.into_iter().filter(|t| *t != track).map(|t| (t, score(t))), limit)
    }
}

/// The `count` best-scored tracks, best first.
fn best(scores: impl Iterator<Item = (u32, f32)>, count: usize) -> Vec<u32> {
    top_scored(scores, count).into_iter().map(|(track, _)| track).collect()
}

#[cfg(test)]
mod tests {
    use rand::{Rng as _, SeedableRng as _, rngs::StdRng};

    use super::*;
    use crate::recommend::{
        als::{AlsConfig, Sparse, train},
        eval::PlantedTastes,
    };

    const DIM: usize = 16;

    /// Embeddings that know each item's cluster, blurred by noise, as metadata would.
    fn embedding(cluster: u32, rng: &mut StdRng) -> Vec<f32> {
        let mut v: Vec<f32> = (0..DIM).map(|_| rng.r#gen::<f32>() * 0.6).collect();
        v[cluster as usize % DIM] += 1.0;
        let norm = dot(&v, &v).sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }

    struct World {
        recommender: Recommender,
        cluster_of_item: Vec<u32>,
    }

    fn world(with_factors: bool, with_embeddings: bool) -> World {
        let dataset =
            PlantedTastes { users: 800, items: 300, clusters: 6, ..Default::default() }.generate();
        let matrix = Sparse::from_triples(dataset.users, dataset.items, &dataset.feedback);
        let factors = with_factors
            .then(|| train(&matrix, &AlsConfig { factors: 16, ..AlsConfig::default() }));
        let mut rng = StdRng::seed_from_u64(5);
        let embeddings: Vec<Option<Vec<f32>>> = dataset
            .cluster_of_item
            .iter()
            .map(|cluster| with_embeddings.then(|| embedding(*cluster, &mut rng)))
            .collect();
        let mut popularity = vec![0f32; dataset.items];
        for (_, item, _) in &dataset.feedback {
            popularity[*item as usize] += 1.0;
        }
        World {
            recommender: {
                let mut recommender = Recommender::new(&embeddings, DIM, factors, popularity);
                if with_embeddings && with_factors {
                    recommender.build_index();
                }
                recommender
            },
            cluster_of_item: dataset.cluster_of_item,
        }
    }

    fn likes(tracks: &[u32]) -> Vec<Feedback> {
        tracks
            .iter()
            .map(|track| Feedback { track: *track, confidence: 5.0, liked: true, recent: false })
            .collect()
    }

    fn three_of(world: &World, cluster: u32) -> Vec<u32> {
        (0..world.cluster_of_item.len() as u32)
            .filter(|t| world.cluster_of_item[*t as usize] == cluster)
            .take(3)
            .collect()
    }

    #[test]
    fn three_likes_of_one_kind_bring_mostly_that_kind_from_either_side_or_both() {
        for (with_factors, with_embeddings) in [(true, true), (true, false), (false, true)] {
            let world = world(with_factors, with_embeddings);
            let liked = three_of(&world, 2);
            let recommended = world.recommender.recommend(&likes(&liked), 10, false);
            assert_eq!(recommended.len(), 10);
            let alike =
                recommended.iter().filter(|r| world.cluster_of_item[r.track as usize] == 2).count();
            assert!(alike >= 7, "factors {with_factors}, embeddings {with_embeddings}: {alike}/10");
            assert!(recommended.iter().all(|r| !liked.contains(&r.track)), "liked ones left out");
            assert!(recommended.windows(2).all(|w| w[0].score >= w[1].score), "best first");
            for r in &recommended {
                assert!(matches!(r.reason, Reason::Liked(t) if liked.contains(&t)), "{r:?}");
            }
        }
    }

    #[test]
    fn known_tracks_come_back_only_when_asked() {
        let world = world(true, true);
        let mut feedback = likes(&three_of(&world, 1));
        feedback[0].liked = false;
        feedback[0].recent = true;
        let including = world.recommender.recommend(&feedback, 300, true);
        assert!(feedback.iter().all(|f| including.iter().any(|r| r.track == f.track)));
        let excluding = world.recommender.recommend(&feedback, 300, false);
        assert!(feedback.iter().all(|f| excluding.iter().all(|r| r.track != f.track)));
    }

    #[test]
    fn with_nothing_to_go_on_the_popular_tracks_are_recommended() {
        let world = world(true, true);
        let recommended = world.recommender.recommend(&[], 5, false);
        assert_eq!(recommended.len(), 5);
        assert!(recommended.iter().all(|r| r.reason == Reason::Popular));
        let most = world.recommender.popularity.iter().copied().fold(0.0, f32::max);
        assert_eq!(world.recommender.popularity[recommended[0].track as usize], most);
    }

    #[test]
    fn similar_tracks_are_mostly_of_the_same_kind_even_for_a_new_track() {
        let mut world = world(true, true);
        let alike = |world: &World, track: u32, similar: &[(u32, f32)]| {
            let cluster = world.cluster_of_item[track as usize];
            similar.iter().filter(|(t, _)| world.cluster_of_item[*t as usize] == cluster).count()
        };
        for track in [0, 17, 123] {
            let similar = world.recommender.similar(track, 10);
            assert_eq!(similar.len(), 10);
            assert!(similar.iter().all(|(t, _)| *t != track));
            assert!(alike(&world, track, &similar) >= 7, "track {track}: {similar:?}");
        }
        // Published after training: no factors, no listeners, only its embedding.
        let mut rng = StdRng::seed_from_u64(9);
        let new = world.recommender.add_track(Some(&embedding(4, &mut rng)));
        world.cluster_of_item.push(4);
        let similar = world.recommender.similar(new, 10);
        assert!(alike(&world, new, &similar) >= 7, "new track: {similar:?}");
    }

    #[test]
    fn the_collaborative_weight_grows_with_feedback() {
        assert_eq!(collaborative_weight(0), 0.0);
        assert!((collaborative_weight(5) - 0.5).abs() < 1e-6);
        assert!(collaborative_weight(100) > 0.9);
    }
}
