//! The AI service on its real models: Whisper hears espeak-ng's speech and the service's
//! own voice, bad audio gets its documented problem, and a full queue refuses with
//! `Retry-After`. The models must have been fetched (`tonearm models fetch`; the test
//! script does it); these tests fail, never skip, when they are missing.

// Tests may unwrap (see clippy.toml).
#![allow(clippy::unwrap_used)]

mod http;
mod models;
mod speech;

use std::{path::PathBuf, process::Command, sync::Arc};

use ai::{AiConfig, AiService};
use async_trait::async_trait;
use kernel::{
    api::{Page, SearchResults},
    caller::Caller,
    catalog::CatalogSearch,
};

/// Where the fetched models are: `TONEARM_TEST_MODELS_DIR`, or the default directory.
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("TONEARM_TEST_MODELS_DIR")
        .map_or_else(ai::models::default_dir, PathBuf::from);
    for artifact in ai::models::all() {
        assert!(
            ai::models::is_fetched(&dir, &artifact),
            "{} is not in {}: run `tonearm models fetch`",
            artifact.dir,
            dir.display()
        );
    }
    dir
}

pub fn config() -> AiConfig {
    AiConfig { models_dir: Some(models_dir()), ..AiConfig::default() }
}

/// A catalog that finds nothing: these tests are about speech, not search.
pub struct NoCatalog;

#[async_trait]
impl CatalogSearch for NoCatalog {
    async fn search(&self, _: &Caller, _: &str, limit: u32) -> Result<SearchResults, String> {
        Ok(SearchResults {
            tracks: Page::of(Vec::new(), 0, limit, 0),
            albums: Page::of(Vec::new(), 0, limit, 0),
            artists: Page::of(Vec::new(), 0, limit, 0),
        })
    }
}

/// The service with its models loaded.
pub async fn service(config: AiConfig) -> Arc<AiService> {
    let service = Arc::new(AiService::new(config, Arc::new(NoCatalog)));
    service.load_models().await;
    service
}

/// How espeak-ng speaks in these tests: American English at 140 words a minute, with a
/// 100 ms gap between words, as a listener speaks a command to a machine. At espeak's
/// default (175 words a minute, words run together) Whisper tiny.en mishears about a
/// quarter of the words (docs/benchmarks.md).
pub const ESPEAK_ARGS: [&str; 6] = ["-v", "en-us", "-s", "140", "-g", "10"];

/// `text` spoken by espeak-ng, as a 22.05 kHz WAV.
pub fn espeak_wav(text: &str) -> Vec<u8> {
    let file = tempfile::NamedTempFile::new().unwrap();
    let status = Command::new("espeak-ng")
        .args(ESPEAK_ARGS)
        .arg("-w")
        .arg(file.path())
        .arg(text)
        .status()
        .expect("espeak-ng runs (the test script installs it)");
    assert!(status.success());
    std::fs::read(file.path()).unwrap()
}
