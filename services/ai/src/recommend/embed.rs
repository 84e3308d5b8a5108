//! Track embeddings: a track's metadata said as a sentence ("Blue in Green by Miles Davis,
//! from Kind of Blue; jazz"), embedded by all-MiniLM-L6-v2 (a BERT sentence encoder, on
//! candle) into 384 numbers, so that tracks of one kind lie close together before anyone
//! has played them. The mean is taken over real tokens only: the model's tokenizer pads
//! every text to 128 tokens, and averaging the padding in would drag every track towards
//! the same point.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer};

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the model's configuration: {0}")]
    Config(#[from] serde_json::Error),
    #[error("the tokenizer: {0}")]
    Tokenizer(String),
    #[error("the model: {0}")]
    Candle(#[from] candle_core::Error),
}

/// The loaded sentence encoder.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").finish_non_exhaustive()
    }
}

/// How a track is said to the encoder.
pub fn track_text(title: &str, artist: &str, album: &str, genre: Option<&str>) -> String {
    let mut text = format!("{title} by {artist}, from {album}");
    if let Some(genre) = genre.map(str::trim).filter(|genre| !genre.is_empty()) {
        text.push_str("; ");
        text.push_str(genre);
    }
    text
}

impl Embedder {
    /// Loads the sentence-transformers directory (`model.safetensors`, `config.json`,
    /// `tokenizer.json`).
    pub fn load(dir: &Path, device: &Device) -> Result<Self, EmbedError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path)
                .map_err(|source| EmbedError::Read { path: path.display().to_string(), source })
        };
        let config: Config = serde_json::from_slice(&read("config.json")?)?;
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|error| EmbedError::Tokenizer(error.to_string()))?;
        // Pad a batch to its longest text only; the mask keeps padding out of the mean.
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        let weights = candle_core::safetensors::load_buffer(&read("model.safetensors")?, device)?;
        let model =
            BertModel::load(VarBuilder::from_tensors(weights, DType::F32, device), &config)?;
        Ok(Self { model, tokenizer, device: device.clone() })
    }

    /// The dimensions of an embedding.
    pub fn dim(&self) -> usize {
        384
    }

    /// Unit-length embeddings of `texts`, in order.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|error| EmbedError::Tokenizer(error.to_string()))?;
        let rows = encodings.len();
        let length = encodings.first().map_or(0, |encoding| encoding.len());
        let column = |pick: fn(&tokenizers::Encoding) -> &[u32]| -> Result<Tensor, EmbedError> {
            let values: Vec<u32> = encodings.iter().flat_map(|e| pick(e).to_vec()).collect();
            Ok(Tensor::from_vec(values, (rows, length), &self.device)?)
        };
        let ids = column(|e| e.get_ids())?;
        let types = column(|e| e.get_type_ids())?;
        let mask = column(|e| e.get_attention_mask())?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        // The mean of the real tokens' states.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1.0, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norms)?.to_vec2()?)
    }
}
