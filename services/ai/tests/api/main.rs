//! The AI service on its real models: Whisper hears espeak-ng's speech and the service's
//! own voice, bad audio gets its documented problem, and a full queue refuses with
//! `Retry-After`; and its store's contract, run on both engines. The models must have
//! been fetched (`tonearm models fetch`; the test script does it); these tests fail,
//! never skip, when they are missing.

// Tests may unwrap (see clippy.toml).
#![allow(clippy::unwrap_used)]

mod embeddings;
mod http;
mod models;
mod speech;
mod store_contract;

use std::{path::PathBuf, sync::Arc};

use ai::{AiConfig, AiService};
pub use testkit::voice::{EmptyCatalog, espeak_wav};

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

/// The service with its models loaded.
pub async fn service(config: AiConfig) -> Arc<AiService> {
    let service = Arc::new(AiService::new(config, Arc::new(EmptyCatalog)));
    service.load_models().await;
    service
}
