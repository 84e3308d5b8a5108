//! Whisper's audio encoder: two convolutions over the log-mel spectrogram, sinusoidal
//! positions, then transformer layers of self-attention. candle's own encoder computes the
//! same thing; this one spends its time in matrix products only, its softmax and GELU
//! being the vectorised ones of `ops` (candle's, element by element through libm, took
//! over a third of the encoder's time). The weights are the same, under the same names.

use candle_core::{Module as _, Result, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::whisper::Config;

use super::ops::{
    gelu_in_place, linear, merge_heads, norm, softmax_last_dim_in_place, split_heads,
};

struct Layer {
    attention_norm: LayerNorm,
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
    mlp_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// The encoder's weights.
pub struct AudioEncoder {
    conv1: Conv1d,
    conv2: Conv1d,
    /// `[max_source_positions, d]`.
    positions: Tensor,
    layers: Vec<Layer>,
    norm: LayerNorm,
    heads: usize,
}

fn conv(inputs: usize, outputs: usize, stride: usize, vb: VarBuilder) -> Result<Conv1d> {
    let config = Conv1dConfig { padding: 1, stride, ..Default::default() };
    Ok(Conv1d::new(vb.get((outputs, inputs, 3), "weight")?, Some(vb.get(outputs, "bias")?), config))
}

impl AudioEncoder {
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let d = config.d_model;
        let layers = (0..config.encoder_layers)
            .map(|i| {
                let vb = vb.pp(format!("layers.{i}"));
                let attention = vb.pp("self_attn");
                Ok(Layer {
                    attention_norm: norm(d, vb.pp("self_attn_layer_norm"))?,
                    query: candle_nn::linear(d, d, attention.pp("q_proj"))?,
                    key: candle_nn::linear_no_bias(d, d, attention.pp("k_proj"))?,
                    value: candle_nn::linear(d, d, attention.pp("v_proj"))?,
                    out: candle_nn::linear(d, d, attention.pp("out_proj"))?,
                    mlp_norm: norm(d, vb.pp("final_layer_norm"))?,
                    fc1: candle_nn::linear(d, 4 * d, vb.pp("fc1"))?,
                    fc2: candle_nn::linear(4 * d, d, vb.pp("fc2"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            conv1: conv(config.num_mel_bins, d, 1, vb.pp("conv1"))?,
            conv2: conv(d, d, 2, vb.pp("conv2"))?,
            positions: sinusoids(config.max_source_positions, d, vb.device())?,
            layers,
            norm: norm(d, vb.pp("layer_norm"))?,
            heads: config.encoder_attention_heads,
        })
    }

    /// `[windows, mel bins, frames]` → `[windows, frames / 2, d]`.
    pub fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let x = gelu_in_place(self.conv1.forward(mel)?)?;
        let x = gelu_in_place(self.conv2.forward(&x)?)?.transpose(1, 2)?;
        let frames = x.dim(1)?;
        let mut x = x.broadcast_add(&self.positions.narrow(0, 0, frames)?)?;
        let head_dim = x.dim(2)? / self.heads;
        let scale = 1.0 / (head_dim as f64).sqrt();
        for layer in &self.layers {
            let h = layer.attention_norm.forward(&x)?;
            let q = split_heads(&(linear(&layer.query, &h)? * scale)?, self.heads)?;
            let k = split_heads(&linear(&layer.key, &h)?, self.heads)?;
            let v = split_heads(&linear(&layer.value, &h)?, self.heads)?;
            let weights = softmax_last_dim_in_place(q.matmul(&k.t()?)?)?;
            x = (x + linear(&layer.out, &merge_heads(&weights.matmul(&v)?)?)?)?;

            let h = layer.mlp_norm.forward(&x)?;
            x = (&x + linear(&layer.fc2, &gelu_in_place(linear(&layer.fc1, &h)?)?)?)?;
        }
        self.norm.forward(&x)
    }
}

/// Whisper's fixed positions: `length` rows of sines then cosines at geometric timescales.
fn sinusoids(length: usize, channels: usize, device: &candle_core::Device) -> Result<Tensor> {
    let half = channels / 2;
    let increment = 10_000f32.ln() / (half - 1) as f32;
    let mut rows = Vec::with_capacity(length * channels);
    for position in 0..length {
        let angles = (0..half).map(|i| position as f32 * (-(i as f32) * increment).exp());
        rows.extend(angles.clone().map(f32::sin));
        rows.extend(angles.map(f32::cos));
    }
    Tensor::from_vec(rows, (length, channels), device)
}
