//! Tonearm's voice and taste. Voice: speech to text with Whisper (run on candle, from a
//! CTranslate2 model file read by [`asr::ct2`]), voice search (a transcript understood by
//! [`voice`], then the catalog searched through [`kernel::catalog::CatalogSearch`]), and
//! text to speech with a Piper VITS voice on ONNX Runtime, its phonemes from espeak-ng.
//! Taste: recommendations and similar tracks ([`recommendations`], built on the
//! algorithms in [`recommend`]), learned from published tracks, plays and likes consumed
//! from the bus ([`events`]) into the service's own [`store`]. Models are loaded once and
//! kept in memory; [`models`] fetches them.

pub mod asr;
pub mod audio;
pub mod config;
pub mod events;
pub mod http;
pub mod models;
pub mod recommend;
pub mod recommendations;
pub mod service;
pub mod store;
pub mod tts;
pub mod voice;

pub use config::AiConfig;
pub use http::{openapi, recommendations_router, router};
pub use recommendations::Recommendations;
pub use service::{AiService, ModelsProbe};

/// The PostgreSQL database this service uses when its URL names none.
pub const DATABASE_NAME: &str = "tonearm_ai";
