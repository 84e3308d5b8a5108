//! Search rules as plain functions: how text becomes words, which indexed words a query
//! word matches (a prefix, or within one edit — two for words of eight letters or more),
//! and how matches rank.

use std::collections::{HashMap, HashSet};

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
        [Self::Title, Self::Artist, Self::Album].into_iter().find(|f| *f as i16 == code)
    }

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

/// Ranks tracks from their indexed words: a track must answer every query word; each
/// word scores its best match times the weight of the field it matched in.
pub fn rank(query: &[String], hits: &[(Uuid, Field, String)]) -> Vec<(Uuid, u32)> {
    // Hits repeat a few words many times: judge each word once.
    let mut strengths: HashMap<&str, Vec<Option<u32>>> = HashMap::new();
    for (_, _, word) in hits {
        strengths.entry(word.as_str()).or_insert_with(|| {
            query.iter().map(|query_word| match_strength(query_word, word)).collect()
        });
    }
    let mut best: HashMap<(Uuid, usize), u32> = HashMap::new();
    for (track, field, word) in hits {
        let Some(judged) = strengths.get(word.as_str()) else { continue };
        for (position, strength) in judged.iter().enumerate() {
            if let Some(strength) = *strength {
                let score = strength * field.weight();
                let entry = best.entry((*track, position)).or_default();
                *entry = (*entry).max(score);
            }
        }
    }
    let tracks: HashSet<Uuid> = best.keys().map(|(track, _)| *track).collect();
    let mut ranked: Vec<(Uuid, u32)> = tracks
        .into_iter()
        .filter_map(|track| {
            let scores: Option<Vec<u32>> =
                (0..query.len()).map(|position| best.get(&(track, position)).copied()).collect();
            scores.map(|scores| (track, scores.iter().sum()))
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
    fn every_query_word_must_match_and_titles_weigh_most() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let hits = vec![
            (a, Field::Title, "feeling".to_owned()),
            (a, Field::Artist, "nina".to_owned()),
            (b, Field::Album, "feeling".to_owned()),
            (b, Field::Artist, "nina".to_owned()),
            (c, Field::Title, "feeling".to_owned()),
        ];
        let query = words("nina feelin");
        let ranked = rank(&query, &hits);
        assert_eq!(ranked.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![a, b], "c lacks nina");
        assert!(ranked[0].1 > ranked[1].1);
    }
}
