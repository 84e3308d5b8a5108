//! Search rules as plain functions: how text becomes words, which indexed words a query
//! word matches (a prefix, or within one edit — two for words of eight letters or more),
//! how matches rank, and in which order a one-word query reads them so that it can stop
//! at the best few.

use std::{collections::HashMap, ops::RangeInclusive};

use uuid::Uuid;

/// Where in a track a word was found; the title weighs most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Title = 0,
    Artist = 1,
    Album = 2,
}

impl Field {
    pub fn from_code(code: i16) -> Option<Self> {
        Self::ALL.into_iter().find(|f| *f as i16 == code)
    }

    pub const ALL: [Self; 3] = [Self::Title, Self::Artist, Self::Album];

    fn weight(self) -> u32 {
        match self {
            Self::Title => 3,
            Self::Artist => 2,
            Self::Album => 1,
        }
    }
}

/// Lower-cased alphanumeric words, accents kept, at most 40 characters each.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| word.to_lowercase().chars().take(40).collect())
        .collect()
}

/// The trigrams that index a word for fuzzy matching, padded so short words have some.
pub fn trigrams(word: &str) -> Vec<String> {
    let padded: Vec<char> = format!("  {word} ").chars().collect();
    let mut grams: Vec<String> = padded.windows(3).map(|w| w.iter().collect()).collect();
    grams.sort();
    grams.dedup();
    grams
}

/// How many edits a query word may be away from an indexed word.
pub fn allowed_edits(query_word: &str) -> usize {
    if query_word.chars().count() >= 8 { 2 } else { 1 }
}

/// The fewest trigrams a word within `allowed_edits` must share with the query word:
/// each edit destroys at most three of them.
pub fn min_shared_trigrams(query_word: &str) -> usize {
    trigrams(query_word).len().saturating_sub(3 * allowed_edits(query_word)).max(1)
}

/// The lengths a word within `allowed_edits` of the query word can have: a near miss
/// is looked up only among these, which keeps the trigram step small for short words.
pub fn near_miss_lengths(query_word: &str) -> RangeInclusive<usize> {
    let length = query_word.chars().count();
    let edits = allowed_edits(query_word);
    length.saturating_sub(edits)..=length + edits
}

/// Levenshtein distance, stopping early once it exceeds `limit`.
pub fn within_edits(a: &str, b: &str, limit: usize) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > limit {
        return false;
    }
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        if current.iter().min().is_some_and(|&best| best > limit) {
            return false;
        }
        previous = current;
    }
    previous[b.len()] <= limit
}

/// How well an indexed word answers a query word, or `None` when it does not.
pub fn match_strength(query_word: &str, indexed: &str) -> Option<u32> {
    if indexed == query_word {
        Some(3)
    } else if indexed.starts_with(query_word) {
        Some(2)
    } else if within_edits(query_word, indexed, allowed_edits(query_word)) {
        Some(1)
    } else {
        None
    }
}

/// A query word's matches that score the same in the same field: the tracks where one
/// of `words` appears in `field` score `score`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub score: u32,
    pub field: Field,
    pub words: Vec<String>,
}

/// The order in which a one-word query reads its matches, best first, so that it can stop
/// once it has enough: one tier for every match strength and field that has words, by
/// score (strength times the field's weight), the closer match first where scores tie.
/// `candidates` are indexed words with their [`match_strength`].
pub fn tiers(candidates: &[(String, u32)]) -> Vec<Tier> {
    let mut strengths: Vec<u32> = candidates.iter().map(|(_, strength)| *strength).collect();
    strengths.sort_unstable_by(|a, b| b.cmp(a));
    strengths.dedup();
    let mut tiers: Vec<Tier> = strengths
        .into_iter()
        .flat_map(|strength| {
            let mut words: Vec<String> = candidates
                .iter()
                .filter(|(_, s)| *s == strength)
                .map(|(word, _)| word.clone())
                .collect();
            words.sort();
            Field::ALL.into_iter().map(move |field| Tier {
                score: strength * field.weight(),
                field,
                words: words.clone(),
            })
        })
        .collect();
    // Stable: among equal scores the stronger match, then the weightier field, stays first.
    tiers.sort_by_key(|tier| std::cmp::Reverse(tier.score));
    tiers
}

/// The tracks an indexed word occurs in, and in which field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub word: String,
    pub occurrences: Vec<(Uuid, Field)>,
}

/// Ranks tracks from the postings of their indexed words: a track must answer every
/// query word; each query word scores its best match times the weight of the field it
/// matched in.
pub fn rank(query: &[String], postings: &[Posting]) -> Vec<(Uuid, u32)> {
    // Each track's best score for each query word, in `query.len()` slots from its index
    // (0 where nothing matched yet: every match scores at least 1).
    let mut slots: HashMap<Uuid, usize> = HashMap::new();
    let mut best: Vec<u32> = Vec::new();
    for posting in postings {
        let strengths: Vec<(usize, u32)> = query
            .iter()
            .enumerate()
            .filter_map(|(position, q)| Some((position, match_strength(q, &posting.word)?)))
            .collect();
        if strengths.is_empty() {
            continue;
        }
        for (track, field) in &posting.occurrences {
            let slot = *slots.entry(*track).or_insert_with(|| {
                best.resize(best.len() + query.len(), 0);
                best.len() - query.len()
            });
            for (position, strength) in &strengths {
                let score = &mut best[slot + position];
                *score = (*score).max(strength * field.weight());
            }
        }
    }
    let mut ranked: Vec<(Uuid, u32)> = slots
        .into_iter()
        .filter_map(|(track, slot)| {
            let scores = &best[slot..slot + query.len()];
            scores.iter().all(|score| *score > 0).then(|| (track, scores.iter().sum()))
        })
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_becomes_lowercase_words() {
        assert_eq!(words("Nina Simone — Feeling Good!"), ["nina", "simone", "feeling", "good"]);
        assert_eq!(words("Sigur Rós"), ["sigur", "rós"]);
        assert!(words(" -- ").is_empty());
    }

    #[test]
    fn words_match_as_prefixes_or_within_one_or_two_edits() {
        assert_eq!(match_strength("artist", "artist"), Some(3));
        assert_eq!(match_strength("art", "artist"), Some(2));
        assert_eq!(match_strength("artst", "artist"), Some(1), "one deletion");
        assert_eq!(
            match_strength("artsit", "artist"),
            None,
            "a swap is two edits; six letters allow one"
        );
        assert_eq!(match_strength("simome", "simone"), Some(1));
        assert_eq!(match_strength("simmmone", "simone"), Some(1), "eight letters allow two edits");
        assert_eq!(match_strength("smoe", "simone"), None);
        assert_eq!(match_strength("jazz", "blues"), None);
    }

    #[test]
    fn edit_distance_is_levenshtein() {
        assert!(within_edits("kitten", "sitten", 1));
        assert!(!within_edits("kitten", "sitting", 2));
        assert!(within_edits("kitten", "sitting", 3));
        assert!(within_edits("", "a", 1));
    }

    #[test]
    fn a_fuzzy_candidate_shares_enough_trigrams() {
        let query = "artst";
        let shared = trigrams(query).iter().filter(|g| trigrams("artist").contains(g)).count();
        assert!(shared >= min_shared_trigrams(query));
    }

    #[test]
    fn near_misses_are_looked_up_among_words_of_nearby_lengths() {
        assert_eq!(near_miss_lengths("art"), 2..=4);
        assert_eq!(near_miss_lengths("vibratoins"), 8..=12);
        assert_eq!(near_miss_lengths("rós"), 2..=4, "letters, not bytes");
    }

    #[test]
    fn one_word_matches_are_read_best_first() {
        let candidates =
            [("lovely".to_owned(), 2), ("love".to_owned(), 3), ("lover".to_owned(), 2)];
        let tiers = tiers(&candidates);
        let order: Vec<(u32, Field, Vec<&str>)> = tiers
            .iter()
            .map(|t| (t.score, t.field, t.words.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            order,
            [
                (9, Field::Title, vec!["love"]),
                (6, Field::Artist, vec!["love"]),
                (6, Field::Title, vec!["lovely", "lover"]),
                (4, Field::Artist, vec!["lovely", "lover"]),
                (3, Field::Album, vec!["love"]),
                (2, Field::Album, vec!["lovely", "lover"]),
            ],
            "an exact artist ties with a title prefix and comes first as the closer match"
        );
        assert!(super::tiers(&[]).is_empty());
    }

    #[test]
    fn every_query_word_must_match_and_titles_weigh_most() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let postings = [
            Posting {
                word: "feeling".to_owned(),
                occurrences: vec![(a, Field::Title), (b, Field::Album), (c, Field::Title)],
            },
            Posting {
                word: "nina".to_owned(),
                occurrences: vec![(a, Field::Artist), (b, Field::Artist)],
            },
            Posting { word: "good".to_owned(), occurrences: vec![(c, Field::Title)] },
        ];
        let query = words("nina feelin");
        let ranked = rank(&query, &postings);
        assert_eq!(ranked.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![a, b], "c lacks nina");
        assert!(ranked[0].1 > ranked[1].1);
    }
}
