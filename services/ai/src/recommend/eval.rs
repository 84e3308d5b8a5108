//! Offline evaluation: hold out part of every user's feedback, train on the rest, and ask
//! how many of the held-out items each method ranks in its top ten, against recommending
//! what is most popular. The data is generated with planted tastes (clusters of items,
//! users who mostly keep to one), so there is a right answer to find.

use rand::{Rng as _, SeedableRng as _, rngs::StdRng, seq::SliceRandom as _};

use super::als::{AlsConfig, Factors, Sparse, train};

/// The size of the top list that is judged.
pub const K: usize = 10;

/// Feedback as `(user, item, confidence)`, with the item clusters that generated it.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub users: usize,
    pub items: usize,
    pub feedback: Vec<(u32, u32, f32)>,
    /// Each item's cluster (its genre), for tests that check what kind of item comes back.
    pub cluster_of_item: Vec<u32>,
    pub cluster_of_user: Vec<u32>,
}

/// How planted-taste data is generated.
#[derive(Debug, Clone, Copy)]
pub struct PlantedTastes {
    pub users: usize,
    pub items: usize,
    pub clusters: usize,
    /// Distinct items per user, on average.
    pub per_user: usize,
    /// The share of a user's choices from their own cluster; the rest are anywhere.
    pub loyalty: f64,
    pub seed: u64,
}

impl Default for PlantedTastes {
    fn default() -> Self {
        Self { users: 5_000, items: 2_000, clusters: 10, per_user: 30, loyalty: 0.8, seed: 7 }
    }
}

impl PlantedTastes {
    /// Items are dealt into clusters; within the catalog popularity falls off as a power
    /// law (a few hits, a long tail), so that popularity is a fair opponent. Each choice is
    /// made `1 + plays` times with completion-weighted plays, giving its confidence.
    pub fn generate(&self) -> Dataset {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let clusters = self.clusters.max(1);
        let cluster_of_item: Vec<u32> =
            (0..self.items).map(|_| rng.gen_range(0..clusters as u32)).collect();
        // Zipf-like weights by a random rank.
        let mut ranks: Vec<usize> = (0..self.items).collect();
        ranks.shuffle(&mut rng);
        let weight: Vec<f64> = ranks.iter().map(|rank| 1.0 / (*rank as f64 + 10.0)).collect();
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); clusters];
        for (item, cluster) in cluster_of_item.iter().enumerate() {
            members[*cluster as usize].push(item as u32);
        }
        let everything: Vec<u32> = (0..self.items as u32).collect();
        // Each pool with its running total of weights, for sampling by bisection.
        let pools: Vec<(Vec<u32>, Vec<f64>)> = members
            .into_iter()
            .chain(std::iter::once(everything))
            .map(|pool| {
                let mut total = 0.0;
                let running = pool
                    .iter()
                    .map(|item| {
                        total += weight[*item as usize];
                        total
                    })
                    .collect();
                (pool, running)
            })
            .collect();
        let pick = |(pool, running): &(Vec<u32>, Vec<f64>), rng: &mut StdRng| -> Option<u32> {
            let at = rng.r#gen::<f64>() * running.last()?;
            pool.get(running.partition_point(|total| *total < at).min(pool.len() - 1)).copied()
        };
        let mut feedback = Vec::new();
        let mut cluster_of_user = Vec::with_capacity(self.users);
        for user in 0..self.users as u32 {
            let taste = rng.gen_range(0..clusters as u32);
            cluster_of_user.push(taste);
            let count = rng.gen_range(self.per_user / 2..=self.per_user * 3 / 2).max(1);
            let mut chosen = std::collections::HashSet::new();
            for _ in 0..count * 3 {
                if chosen.len() == count {
                    break;
                }
                let pool = if rng.gen_bool(self.loyalty) {
                    &pools[taste as usize]
                } else {
                    &pools[clusters]
                };
                if let Some(item) = pick(pool, &mut rng)
                    && chosen.insert(item)
                {
                    let plays = rng.gen_range(1..=8) as f32 * rng.gen_range(0.3..=1.0f32);
                    feedback.push((user, item, 1.0 + plays));
                }
            }
        }
        Dataset { users: self.users, items: self.items, feedback, cluster_of_item, cluster_of_user }
    }
}

/// A ratings file as implicit feedback: lines of `user item rating …`, split by tabs,
/// spaces, commas or `::` (MovieLens's formats). A rating of `positive` or more is a
/// choice, with confidence 1 + rating; lower ratings are left out, as is usual when
/// ratings are judged as implicit feedback. Ids are mapped to dense indexes.
pub fn from_ratings(text: &str, positive: f32) -> Result<Dataset, String> {
    use std::collections::HashMap;
    let mut users: HashMap<&str, u32> = HashMap::new();
    let mut items: HashMap<&str, u32> = HashMap::new();
    let mut feedback = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let fields: Vec<&str> =
            line.split(['\t', ' ', ',', ':']).filter(|field| !field.is_empty()).collect();
        if fields.is_empty() {
            continue;
        }
        let [user, item, rating, ..] = fields[..] else {
            return Err(format!("line {}: expected user, item and rating", number + 1));
        };
        let Ok(rating) = rating.parse::<f32>() else {
            if number == 0 {
                continue; // a header
            }
            return Err(format!("line {}: the rating {rating:?} is not a number", number + 1));
        };
        if rating < positive {
            continue;
        }
        let next = users.len() as u32;
        let user = *users.entry(user).or_insert(next);
        let next = items.len() as u32;
        let item = *items.entry(item).or_insert(next);
        feedback.push((user, item, 1.0 + rating));
    }
    Ok(Dataset {
        users: users.len(),
        items: items.len(),
        feedback,
        cluster_of_item: vec![0; items.len()],
        cluster_of_user: vec![0; users.len()],
    })
}

/// Each user's feedback split: `held_out` of it (at random, at least one item for anyone
/// with two or more) to be predicted, the rest to train on.
pub fn split(dataset: &Dataset, held_out: f64, seed: u64) -> (Sparse, Vec<Vec<u32>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut by_user: Vec<Vec<(u32, f32)>> = vec![Vec::new(); dataset.users];
    for (user, item, confidence) in &dataset.feedback {
        by_user[*user as usize].push((*item, *confidence));
    }
    let mut train_triples = Vec::new();
    let mut test = vec![Vec::new(); dataset.users];
    for (user, mut items) in by_user.into_iter().enumerate() {
        items.shuffle(&mut rng);
        let hold = if items.len() >= 2 {
            ((items.len() as f64 * held_out).round() as usize).clamp(1, items.len() - 1)
        } else {
            0
        };
        for (index, (item, confidence)) in items.into_iter().enumerate() {
            if index < hold {
                test[user].push(item);
            } else {
                train_triples.push((user as u32, item, confidence));
            }
        }
    }
    (Sparse::from_triples(dataset.users, dataset.items, &train_triples), test)
}

/// Precision, recall and NDCG at [`K`], averaged over users with held-out items.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    pub precision: f64,
    pub recall: f64,
    pub ndcg: f64,
}

/// Judges `recommend(user, excluded)`, which returns a user's top [`K`] items leaving out
/// those they trained on.
pub fn score(
    train: &Sparse,
    test: &[Vec<u32>],
    recommend: impl Fn(usize, &[u32]) -> Vec<u32> + Sync,
) -> Scores {
    use rayon::prelude::*;
    let judged: Vec<(f64, f64, f64)> = (0..train.rows)
        .into_par_iter()
        .filter(|user| !test[*user].is_empty())
        .map(|user| {
            let (seen, _) = train.row(user);
            let top = recommend(user, seen);
            let relevant = &test[user];
            let hits: Vec<bool> = top.iter().take(K).map(|item| relevant.contains(item)).collect();
            let found = hits.iter().filter(|hit| **hit).count() as f64;
            let dcg: f64 = hits
                .iter()
                .enumerate()
                .filter(|(_, hit)| **hit)
                .map(|(rank, _)| 1.0 / (rank as f64 + 2.0).log2())
                .sum();
            let ideal: f64 =
                (0..relevant.len().min(K)).map(|rank| 1.0 / (rank as f64 + 2.0).log2()).sum();
            (found / K as f64, found / relevant.len() as f64, dcg / ideal)
        })
        .collect();
    let n = judged.len().max(1) as f64;
    Scores {
        precision: judged.iter().map(|s| s.0).sum::<f64>() / n,
        recall: judged.iter().map(|s| s.1).sum::<f64>() / n,
        ndcg: judged.iter().map(|s| s.2).sum::<f64>() / n,
    }
}

/// The [`K`] best of `scores`, skipping `excluded` (sorted).
pub fn top_k(scores: impl Iterator<Item = (u32, f32)>, excluded: &[u32], k: usize) -> Vec<u32> {
    let kept = scores.filter(|(item, _)| excluded.binary_search(item).is_err());
    top_scored(kept, k).into_iter().map(|(item, _)| item).collect()
}

/// The `k` best of `scores` with their scores, best first, in one pass.
pub fn top_scored(scores: impl Iterator<Item = (u32, f32)>, k: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (item, score) in scores {
        if best.len() < k || score > best[best.len() - 1].1 {
            let at = best.partition_point(|(_, kept)| *kept >= score);
            best.insert(at, (item, score));
            best.truncate(k);
        }
    }
    best
}

/// Items by how many users chose them in training, most first.
pub fn popularity(train: &Sparse) -> Vec<(u32, f32)> {
    let mut counts = vec![0f32; train.columns_count];
    for user in 0..train.rows {
        for item in train.row(user).0 {
            counts[*item as usize] += 1.0;
        }
    }
    counts.into_iter().enumerate().map(|(item, count)| (item as u32, count)).collect()
}

/// One evaluation: both methods on the same split.
#[derive(Debug, Clone)]
pub struct Report {
    pub dataset: String,
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    pub popularity: Scores,
    pub als: Scores,
    pub train_seconds: f64,
}

impl Report {
    pub fn table(reports: &[Report]) -> String {
        let mut lines = vec![
            "| dataset | method | precision@10 | recall@10 | NDCG@10 |".to_owned(),
            "|---|---|---|---|---|".to_owned(),
        ];
        for report in reports {
            let name = format!(
                "{} ({} users, {} items, {} interactions)",
                report.dataset, report.users, report.items, report.interactions
            );
            for (method, scores) in [("popularity", report.popularity), ("ALS", report.als)] {
                lines.push(format!(
                    "| {name} | {method} | {:.3} | {:.3} | {:.3} |",
                    scores.precision, scores.recall, scores.ndcg
                ));
            }
        }
        lines.join("\n")
    }
}

/// Trains on 80 % of each user's feedback and judges ALS and popularity on the rest.
pub fn evaluate(name: &str, dataset: &Dataset, config: &AlsConfig) -> Report {
    let (train_set, test) = split(dataset, 0.2, 11);
    let popular = popularity(&train_set);
    let popularity_scores =
        score(&train_set, &test, |_, seen| top_k(popular.iter().copied(), seen, K));
    let started = std::time::Instant::now();
    let factors: Factors = train(&train_set, config);
    let train_seconds = started.elapsed().as_secs_f64();
    let als = score(&train_set, &test, |user, seen| {
        let x = factors.users.get(user);
        let scores = (0..dataset.items)
            .map(|item| (item as u32, super::als::dot(x, factors.items.get(item))));
        top_k(scores, seen, K)
    });
    Report {
        dataset: name.to_owned(),
        users: dataset.users,
        items: dataset.items,
        interactions: dataset.feedback.len(),
        popularity: popularity_scores,
        als,
        train_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_keeps_something_of_everyone_on_each_side() {
        let dataset = PlantedTastes { users: 50, items: 100, ..Default::default() }.generate();
        let (train, test) = split(&dataset, 0.2, 1);
        for (user, held_out) in test.iter().enumerate() {
            let (seen, _) = train.row(user);
            assert!(!seen.is_empty() && !held_out.is_empty(), "user {user}");
            assert!(held_out.iter().all(|item| !seen.contains(item)));
        }
        assert_eq!(
            train.entries() + test.iter().map(Vec::len).sum::<usize>(),
            dataset.feedback.len()
        );
    }

    #[test]
    fn perfect_and_useless_rankings_score_one_and_zero() {
        let train = Sparse::from_triples(1, 20, &[(0, 0, 1.0)]);
        let test = vec![vec![1, 2, 3]];
        let perfect = score(&train, &test, |_, _| vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert!((perfect.ndcg - 1.0).abs() < 1e-9 && (perfect.recall - 1.0).abs() < 1e-9);
        assert!((perfect.precision - 0.3).abs() < 1e-9);
        let useless = score(&train, &test, |_, _| (10..20).collect());
        assert_eq!(useless, Scores::default());
    }

    #[test]
    fn ratings_files_become_choices() {
        let text = "userId,movieId,rating,timestamp\n1,10,5,0\n1,11,2,0\n2,10,4.5,0\n";
        let dataset = from_ratings(text, 4.0).unwrap();
        assert_eq!((dataset.users, dataset.items), (2, 1));
        assert_eq!(dataset.feedback, vec![(0, 0, 6.0), (1, 0, 5.5)]);
        let movielens =
            from_ratings("196\t242\t3\t881250949\n1::1193::5::978300760\n", 1.0).unwrap();
        assert_eq!(movielens.feedback.len(), 2);
        assert!(from_ratings("1,2\n", 4.0).is_err());
        assert!(from_ratings("1,2,3\n1,2,x\n", 4.0).is_err());
    }

    #[test]
    fn the_top_skips_what_was_seen() {
        let scores = [(0, 0.9), (1, 0.1), (2, 0.8), (3, 0.95)].into_iter();
        assert_eq!(top_k(scores, &[3], 2), vec![0, 2]);
    }

    #[test]
    fn on_planted_tastes_als_beats_popularity_twice_over() {
        let dataset = PlantedTastes { users: 1_500, items: 600, ..Default::default() }.generate();
        let report =
            evaluate("planted", &dataset, &AlsConfig { factors: 32, ..Default::default() });
        assert!(
            report.als.ndcg >= 2.0 * report.popularity.ndcg,
            "{}",
            Report::table(std::slice::from_ref(&report))
        );
    }
}
