//! The fetched model loads as documented: the CTranslate2 file maps onto candle's Whisper
//! with tiny.en's dimensions.

use ai::asr::ct2::Ct2Model;
use candle_core::{DType, Device};

use crate::models_dir;

#[test]
fn the_ctranslate2_whisper_maps_onto_every_weight_candle_needs() {
    let file = std::fs::read(models_dir().join("whisper-tiny.en/model.bin")).unwrap();
    let model = Ct2Model::parse(file).unwrap();
    let config = model.config().unwrap();
    assert_eq!(
        (config.d_model, config.encoder_layers, config.decoder_layers, config.vocab_size),
        (384, 4, 4, 51_864)
    );
    assert_eq!((config.encoder_attention_heads, config.num_mel_bins), (6, 80));
    let weights = model.candle_weights(DType::F32, &Device::Cpu).unwrap();
    // Per layer: encoder 15 tensors, decoder 24 (with cross-attention); plus convolutions,
    // norms, embeddings.
    assert_eq!(weights.len(), 4 * 15 + 4 * 24 + 4 + 4 + 2);
    let key = &weights["model.decoder.layers.0.encoder_attn.k_proj.weight"];
    assert_eq!(key.dims(), [384, 384]);
    assert!(!weights.contains_key("model.decoder.layers.0.encoder_attn.k_proj.bias"));
    let builder = candle_nn::VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    candle_transformers::models::whisper::model::Whisper::load(&builder, config).unwrap();
}
