//! Tonearm's voice: speech to text with Whisper (run on candle, from a CTranslate2 model
//! file read by [`asr::ct2`]), voice search (a transcript understood by [`voice`], then the
//! catalog searched through [`kernel::catalog::CatalogSearch`]), and text to speech with a
//! Piper VITS voice on ONNX Runtime, its phonemes from espeak-ng. Models are loaded once
//! and kept in memory; [`models`] fetches them. The service keeps no records of its own.

pub mod asr;
pub mod audio;
pub mod config;
pub mod http;
pub mod models;
pub mod recommend;
pub mod service;
pub mod tts;
pub mod voice;

pub use config::AiConfig;
pub use http::{openapi, router};
pub use service::{AiService, ModelsProbe};
