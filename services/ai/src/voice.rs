//! What a spoken request asks for: "play kind of blue by miles davis" is a play of "kind of
//! blue" by the artist "miles davis". Plain rules over the transcript's words, no model:
//! they are predictable, instant, and say in their answer what they understood.

use serde::Serialize;
use utoipa::ToSchema;

/// What the listener wants done with what is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// "play …": start it.
    Play,
    /// "shuffle …": play it in random order.
    Shuffle,
    /// "songs like …": music that resembles it.
    Similar,
    /// Anything else: just find it.
    Search,
}

/// A request as understood: the action, what to look for, and the artist or album named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Intent {
    pub action: Action,
    /// The words to look for, without the action's and the qualifiers' words.
    pub query: String,
    /// From "… by <artist>".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artist: Option<String>,
    /// From "… from <album>" or "… off the album <album>".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub album: Option<String>,
}

impl Intent {
    /// The words the catalog is searched for: everything named.
    pub fn search_text(&self) -> String {
        [Some(self.query.as_str()), self.album.as_deref(), self.artist.as_deref()]
            .into_iter()
            .flatten()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The same request without its qualifiers: the whole phrase as one query, for when a
    /// "by" or "from" turns out to be part of a title ("stand by me").
    pub fn unqualified(&self, transcript: &str) -> Self {
        let (action, rest) = action_of(&normalize(transcript));
        Self { action, query: rest.join(" "), artist: None, album: None }
    }
}

/// Lower-case words, punctuation gone (apostrophes inside words kept).
fn normalize(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && c != '\''))
        .map(|word| word.trim_matches('\'').to_lowercase())
        .filter(|word| !word.is_empty())
        .collect()
}

const POLITE: &[&str] = &[
    "please", "hey", "ok", "okay", "tonearm", "can", "could", "you", "would", "i", "want", "to",
    "me", "some", "let's", "lets",
];

/// Words that begin with an action's word without being that action.
const NOT_GLUED: &[&str] = &[
    "playlist",
    "playlists",
    "player",
    "players",
    "playing",
    "played",
    "plays",
    "playful",
    "playback",
    "shuffled",
    "shuffling",
];

/// Heard speech sometimes runs the command into the next word ("Playkind of Blue"): the
/// command is split off again.
fn unglue(words: &mut Vec<String>, at: usize) {
    let Some(word) = words.get(at) else { return };
    for action in ["play", "shuffle"] {
        if word.len() > action.len() + 1
            && word.starts_with(action)
            && !NOT_GLUED.contains(&word.as_str())
        {
            let rest = word[action.len()..].to_owned();
            words[at] = action.to_owned();
            words.insert(at + 1, rest);
            return;
        }
    }
}

/// The action and the words after the phrase that asks for it.
fn action_of(words: &[String]) -> (Action, Vec<String>) {
    let mut start = 0;
    while start < words.len() && POLITE.contains(&words[start].as_str()) {
        // "play me …" keeps its "me" out; a lone "me" at the end stays.
        if start + 1 == words.len() {
            break;
        }
        start += 1;
    }
    let mut rest = words[start..].to_vec();
    unglue(&mut rest, 0);
    let phrases: &[(&[&str], Action)] = &[
        (&["shuffle", "play"], Action::Shuffle),
        (&["shuffle"], Action::Shuffle),
        (&["play", "songs", "like"], Action::Similar),
        (&["play", "music", "like"], Action::Similar),
        (&["play", "something", "like"], Action::Similar),
        (&["songs", "like"], Action::Similar),
        (&["music", "like"], Action::Similar),
        (&["something", "like"], Action::Similar),
        (&["more", "like"], Action::Similar),
        (&["similar", "to"], Action::Similar),
        (&["play"], Action::Play),
        (&["listen", "to"], Action::Play),
        (&["put", "on"], Action::Play),
        (&["search", "for"], Action::Search),
        (&["search"], Action::Search),
        (&["find"], Action::Search),
    ];
    for (phrase, action) in phrases {
        if rest.len() >= phrase.len() && rest.iter().zip(phrase.iter()).all(|(w, p)| w == p) {
            let mut after = rest[phrase.len()..].to_vec();
            // "play the song …", "play the album …": the kind word is not part of the name.
            if after.first().is_some_and(|w| w == "the")
                && after
                    .get(1)
                    .is_some_and(|w| ["song", "track", "album", "record"].contains(&w.as_str()))
            {
                after.drain(..2);
            } else if after.first().is_some_and(|w| ["song", "track"].contains(&w.as_str())) {
                after.remove(0);
            }
            return (*action, after);
        }
    }
    (Action::Search, rest)
}

/// Whether a spoken name is the catalog's `name`: each spoken word is one of the name's
/// words, or within one edit of it (a mishearing), ignoring case and punctuation.
pub fn names_match(spoken: &str, name: &str) -> bool {
    let name_words = normalize(name);
    let spoken_words = normalize(spoken);
    !spoken_words.is_empty()
        && spoken_words.iter().all(|word| {
            name_words.iter().any(|candidate| {
                candidate == word || (word.len() >= 4 && within_one_edit(word, candidate))
            })
        })
}

fn within_one_edit(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let (short, long) = if a.len() <= b.len() { (&a, &b) } else { (&b, &a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short.iter().zip(long.iter()).take_while(|(x, y)| x == y).count();
    if short.len() == long.len() {
        let after = (prefix + 1).min(short.len());
        short[after..] == long[after..]
    } else {
        short[prefix..] == long[prefix + 1..]
    }
}

/// Understands a transcript.
pub fn parse(transcript: &str) -> Intent {
    let words = normalize(transcript);
    let (action, rest) = action_of(&words);
    let mut query = rest;
    let mut artist = None;
    let mut album = None;
    // The last "by" names the artist; "from"/"off" before or after it, the album.
    if let Some(by) = query.iter().rposition(|w| w == "by").filter(|at| *at + 1 < query.len()) {
        artist = Some(query.split_off(by)[1..].join(" "));
    }
    for marker in ["from", "off"] {
        if let Some(at) = query.iter().rposition(|w| w == marker).filter(|at| *at + 1 < query.len())
        {
            let mut named = query.split_off(at)[1..].to_vec();
            if named.first().is_some_and(|w| w == "the")
                && named.get(1).is_some_and(|w| w == "album" || w == "record")
            {
                named.drain(..2);
            } else if named.first().is_some_and(|w| w == "album") {
                named.remove(0);
            }
            album = Some(named.join(" ")).filter(|name| !name.is_empty());
            break;
        }
    }
    // "play miles davis" names no qualifier: its words are the query.
    Intent { action, query: query.join(" "), artist, album }
}

/// Spellings that say the same thing, mapped to one, as Whisper's English normaliser does
/// before counting errors (numbers and decades in figures, American spelling).
const SAME_WORDS: &[(&str, &str)] = &[
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
    ("eleven", "11"),
    ("twelve", "12"),
    ("twenty", "20"),
    ("thirty", "30"),
    ("fifty", "50"),
    ("hundred", "100"),
    ("sixties", "60s"),
    ("seventies", "70s"),
    ("eighties", "80s"),
    ("nineties", "90s"),
    ("favourite", "favorite"),
    ("favourites", "favorites"),
    ("colour", "color"),
    ("ok", "okay"),
];

/// Word error rate of `hypothesis` against `reference`: substitutions, deletions and
/// insertions over the reference's words, after lower-casing, dropping punctuation and
/// mapping [`SAME_WORDS`]. Returns the edit count and the reference's word count.
pub fn word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let norm = |text: &str| -> Vec<String> {
        text.split(|c: char| c.is_whitespace() || c == '-')
            .map(|word| {
                let word: String = word
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == '\'')
                    .collect::<String>()
                    .to_lowercase();
                SAME_WORDS
                    .iter()
                    .find(|(from, _)| *from == word)
                    .map_or(word, |(_, to)| (*to).to_owned())
            })
            .filter(|word| !word.is_empty())
            .collect()
    };
    let (reference, hypothesis) = (norm(reference), norm(hypothesis));
    let mut previous: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut current = vec![i + 1; hypothesis.len() + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            let substitution = previous[j] + usize::from(r != h);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    (previous[hypothesis.len()], reference.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(action: Action, query: &str, artist: Option<&str>, album: Option<&str>) -> Intent {
        Intent {
            action,
            query: query.into(),
            artist: artist.map(Into::into),
            album: album.map(Into::into),
        }
    }

    #[test]
    fn play_with_an_artist() {
        assert_eq!(
            parse("Play Kind of Blue by Miles Davis."),
            intent(Action::Play, "kind of blue", Some("miles davis"), None)
        );
    }

    #[test]
    fn actions_and_their_phrasings() {
        assert_eq!(parse("shuffle some jazz").action, Action::Shuffle);
        assert_eq!(parse("Shuffle play Blue Train").query, "blue train");
        assert_eq!(parse("songs like So What"), intent(Action::Similar, "so what", None, None));
        assert_eq!(parse("Play something like Naima").action, Action::Similar);
        assert_eq!(
            parse("please play the album Giant Steps"),
            intent(Action::Play, "giant steps", None, None)
        );
        assert_eq!(parse("Hey, put on Take Five!"), intent(Action::Play, "take five", None, None));
        assert_eq!(parse("blue in green"), intent(Action::Search, "blue in green", None, None));
    }

    #[test]
    fn albums_and_artists_together() {
        assert_eq!(
            parse("play so what from kind of blue by miles davis"),
            intent(Action::Play, "so what", Some("miles davis"), Some("kind of blue"))
        );
        assert_eq!(
            parse("play freddie freeloader off the album kind of blue"),
            intent(Action::Play, "freddie freeloader", None, Some("kind of blue"))
        );
    }

    #[test]
    fn an_artist_alone_is_the_query_and_the_whole_phrase_is_kept_for_a_retry() {
        assert_eq!(parse("play by miles"), intent(Action::Play, "", Some("miles"), None));
        let heard = "play stand by me";
        let understood = parse(heard);
        assert_eq!(understood.artist.as_deref(), Some("me"));
        assert_eq!(understood.unqualified(heard), intent(Action::Play, "stand by me", None, None));
        assert_eq!(understood.search_text(), "stand me");
    }

    #[test]
    fn a_command_run_into_the_next_word_is_split_off() {
        assert_eq!(
            parse("Playkind of Blue by Miles Davis"),
            intent(Action::Play, "kind of blue", Some("miles davis"), None)
        );
        assert_eq!(parse("play my playlist").query, "my playlist");
        assert_eq!(
            parse("playlist road trip"),
            intent(Action::Search, "playlist road trip", None, None)
        );
    }

    #[test]
    fn spoken_names_match_despite_case_punctuation_and_a_slip() {
        assert!(names_match("miles davis", "Miles Davis"));
        assert!(names_match("miles", "Miles Davis Quintet"));
        assert!(names_match("miles davies", "Miles Davis"), "one edit");
        assert!(!names_match("john coltrane", "Miles Davis"));
        assert!(!names_match("", "Miles Davis"));
        assert!(names_match("ac dc", "AC/DC"));
    }

    #[test]
    fn word_error_rate_counts_edits_over_the_reference() {
        assert_eq!(word_errors("play kind of blue", "Play kind of blue."), (0, 4));
        assert_eq!(word_errors("play kind of blue", "play kind a blue"), (1, 4));
        assert_eq!(word_errors("play kind of blue", "kind of blue now"), (2, 4));
        assert_eq!(word_errors("a b", ""), (2, 2));
        assert_eq!(word_errors("love songs from the eighties", "Love songs from the 80s."), (0, 5));
    }
}
