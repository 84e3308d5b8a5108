//! Speech for the voice tests and benchmarks: espeak-ng speaking as a listener speaks a
//! command, and a catalog that finds nothing, for when search is not what is tested.

use kernel::{
    api::{Page, SearchResults},
    caller::Caller,
    catalog::CatalogSearch,
};

/// American English at 140 words a minute with a 100 ms gap between words. At espeak-ng's
/// default (175 words a minute, words run together) Whisper tiny.en mishears about a
/// quarter of the words (docs/benchmarks.md).
pub const ESPEAK_ARGS: [&str; 6] = ["-v", "en-us", "-s", "140", "-g", "10"];

/// `text` spoken by espeak-ng, as a 22.05 kHz WAV. Panics when espeak-ng is missing (the
/// test script installs it).
pub fn espeak_wav(text: &str) -> Vec<u8> {
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    let status = std::process::Command::new("espeak-ng")
        .args(ESPEAK_ARGS)
        .arg("-w")
        .arg(file.path())
        .arg(text)
        .status()
        .expect("espeak-ng runs (the test script installs it)");
    assert!(status.success(), "espeak-ng failed on {text:?}");
    std::fs::read(file.path()).expect("espeak-ng wrote the WAV")
}

/// A catalog whose every search finds nothing.
pub struct EmptyCatalog;

#[async_trait::async_trait]
impl CatalogSearch for EmptyCatalog {
    async fn search(&self, _: &Caller, _: &str, limit: u32) -> Result<SearchResults, String> {
        Ok(SearchResults {
            tracks: Page::of(Vec::new(), 0, limit, 0),
            albums: Page::of(Vec::new(), 0, limit, 0),
            artists: Page::of(Vec::new(), 0, limit, 0),
        })
    }
}
