//! Whisper's text decoder, written for decoding many sequences at once: each step feeds
//! only the new token of every sequence (self-attention keys and values are cached and
//! reordered as beams are), and the encoder's keys and values are computed once per window
//! and shared by all of that window's beams. candle's own decoder recomputes the whole
//! sequence at every step and copies the audio per sequence; this one does neither. The
//! weights are the same, under the same names.

use candle_core::{DType, Module as _, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::whisper::Config;

struct Layer {
    self_norm: LayerNorm,
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
    cross_norm: LayerNorm,
    cross_query: Linear,
    cross_key: Linear,
    cross_value: Linear,
    cross_out: Linear,
    mlp_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// The decoder's weights.
pub struct TextDecoder {
    embedding: Embedding,
    positions: Tensor,
    layers: Vec<Layer>,
    norm: LayerNorm,
    heads: usize,
}

/// The encoder's keys for each layer, transposed for the product with the queries,
/// `[windows, heads, head_dim, frames]`, and its values, `[windows, heads, frames, head_dim]`.
pub struct AudioContext {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    windows: usize,
}

/// Every sequence's self-attention keys and values so far, per layer,
/// `[sequences, heads, tokens, head_dim]`.
#[derive(Default)]
pub struct SelfCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
}

impl SelfCache {
    /// Tokens cached per sequence.
    pub fn tokens(&self) -> usize {
        self.keys.first().map_or(0, |k| k.dim(2).unwrap_or(0))
    }

    /// Keeps row `rows[i]` of the cache as row `i` (beams follow their parents).
    pub fn reorder(&mut self, rows: &Tensor) -> Result<()> {
        for cached in self.keys.iter_mut().chain(self.values.iter_mut()) {
            *cached = cached.index_select(rows, 0)?;
        }
        Ok(())
    }
}

fn norm(size: usize, vb: VarBuilder) -> Result<LayerNorm> {
    candle_nn::layer_norm(size, 1e-5, vb)
}

impl TextDecoder {
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let d = config.d_model;
        let layers = (0..config.decoder_layers)
            .map(|i| {
                let vb = vb.pp(format!("layers.{i}"));
                let attn = vb.pp("self_attn");
                let cross = vb.pp("encoder_attn");
                Ok(Layer {
                    self_norm: norm(d, vb.pp("self_attn_layer_norm"))?,
                    query: candle_nn::linear(d, d, attn.pp("q_proj"))?,
                    key: candle_nn::linear_no_bias(d, d, attn.pp("k_proj"))?,
                    value: candle_nn::linear(d, d, attn.pp("v_proj"))?,
                    out: candle_nn::linear(d, d, attn.pp("out_proj"))?,
                    cross_norm: norm(d, vb.pp("encoder_attn_layer_norm"))?,
                    cross_query: candle_nn::linear(d, d, cross.pp("q_proj"))?,
                    cross_key: candle_nn::linear_no_bias(d, d, cross.pp("k_proj"))?,
                    cross_value: candle_nn::linear(d, d, cross.pp("v_proj"))?,
                    cross_out: candle_nn::linear(d, d, cross.pp("out_proj"))?,
                    mlp_norm: norm(d, vb.pp("final_layer_norm"))?,
                    fc1: candle_nn::linear(d, 4 * d, vb.pp("fc1"))?,
                    fc2: candle_nn::linear(4 * d, d, vb.pp("fc2"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embedding: candle_nn::embedding(config.vocab_size, d, vb.pp("embed_tokens"))?,
            positions: vb.get((config.max_target_positions, d), "embed_positions.weight")?,
            layers,
            norm: norm(d, vb.pp("layer_norm"))?,
            heads: config.decoder_attention_heads,
        })
    }

    /// `[n, t, d]` → `[n, heads, t, d / heads]`.
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (n, t, d) = x.dims3()?;
        x.reshape((n, t, self.heads, d / self.heads))?.transpose(1, 2)?.contiguous()
    }

    /// `[n, heads, t, head_dim]` → `[n, t, d]`.
    fn merge_heads(x: &Tensor) -> Result<Tensor> {
        let (n, heads, t, head_dim) = x.dims4()?;
        x.transpose(1, 2)?.reshape((n, t, heads * head_dim))
    }

    /// The encoder's keys and values for every layer, from its output `[windows, frames, d]`.
    pub fn audio_context(&self, audio: &Tensor) -> Result<AudioContext> {
        let mut keys = Vec::with_capacity(self.layers.len());
        let mut values = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            keys.push(self.split_heads(&layer.cross_key.forward(audio)?)?.t()?.contiguous()?);
            values.push(self.split_heads(&layer.cross_value.forward(audio)?)?);
        }
        Ok(AudioContext { keys, values, windows: audio.dim(0)? })
    }

    /// Feeds `tokens` (`[sequences, t]`, the same number of sequences for every window, in
    /// window order) after what `cache` holds, and returns the logits of each sequence's
    /// last token, `[sequences, vocab]`.
    pub fn step(
        &self,
        tokens: &Tensor,
        audio: &AudioContext,
        cache: &mut SelfCache,
    ) -> Result<Tensor> {
        let (sequences, t) = tokens.dims2()?;
        let offset = cache.tokens();
        let per_window = sequences / audio.windows.max(1);
        let scale = 1.0 / ((self.embedding.embeddings().dim(1)? / self.heads) as f64).sqrt();
        let mut x =
            self.embedding.forward(tokens)?.broadcast_add(&self.positions.narrow(0, offset, t)?)?;
        // Within the new tokens, each sees those before it; all of them see the cache.
        let mask = (t > 1)
            .then(|| {
                let rows: Vec<f32> = (0..t)
                    .flat_map(|i| {
                        (0..offset + t)
                            .map(move |j| if j > offset + i { f32::NEG_INFINITY } else { 0.0 })
                    })
                    .collect();
                Tensor::from_vec(rows, (t, offset + t), tokens.device())
            })
            .transpose()?;
        let first = cache.keys.is_empty();
        for (index, layer) in self.layers.iter().enumerate() {
            // Self-attention over the cache and the new tokens.
            let h = layer.self_norm.forward(&x)?;
            let q = self.split_heads(&(layer.query.forward(&h)? * scale)?)?;
            let mut k = self.split_heads(&layer.key.forward(&h)?)?;
            let mut v = self.split_heads(&layer.value.forward(&h)?)?;
            if first {
                cache.keys.push(k.clone());
                cache.values.push(v.clone());
            } else {
                k = Tensor::cat(&[&cache.keys[index], &k], 2)?;
                v = Tensor::cat(&[&cache.values[index], &v], 2)?;
                cache.keys[index] = k.clone();
                cache.values[index] = v.clone();
            }
            let mut weights = q.matmul(&k.t()?)?;
            if let Some(mask) = &mask {
                weights = weights.broadcast_add(mask)?;
            }
            let attended = candle_nn::ops::softmax_last_dim(&weights)?.matmul(&v)?;
            x = (x + layer.out.forward(&Self::merge_heads(&attended)?)?)?;

            // Cross-attention: a window's sequences side by side against its audio.
            let h = layer.cross_norm.forward(&x)?;
            let q = self.split_heads(&(layer.cross_query.forward(&h)? * scale)?)?;
            let (_, heads, _, head_dim) = q.dims4()?;
            let q = q
                .reshape((audio.windows, per_window, heads, t, head_dim))?
                .transpose(1, 2)?
                .reshape((audio.windows, heads, per_window * t, head_dim))?;
            let weights = q.matmul(&audio.keys[index])?;
            let attended =
                candle_nn::ops::softmax_last_dim(&weights)?.matmul(&audio.values[index])?;
            let attended = attended
                .reshape((audio.windows, heads, per_window, t, head_dim))?
                .transpose(1, 2)?
                .reshape((sequences, heads, t, head_dim))?;
            x = (x + layer.cross_out.forward(&Self::merge_heads(&attended)?)?)?;

            let h = layer.mlp_norm.forward(&x)?;
            x = (&x + layer.fc2.forward(&layer.fc1.forward(&h)?.gelu()?)?)?;
        }
        let last = self.norm.forward(&x.narrow(1, t - 1, 1)?.squeeze(1)?)?;
        // The output projection shares the token embeddings. Multiplied in their own
        // layout, `[vocab, d] × [d, sequences]`: with the embeddings as the right-hand side,
        // the matrix kernel would repack all of them (80 MB for tiny) at every step.
        self.embedding.embeddings().matmul(&last.t()?.contiguous()?)?.t()?.to_dtype(DType::F32)
    }
}

/// Log-probabilities over the vocabulary of `logits` plus `mask` (0, or -inf for tokens
/// never to emit), per row; computed here rather than as tensor operations, which cost
/// more in dispatch than in arithmetic at this size.
pub fn log_probs(logits: &Tensor, mask: &[f32]) -> Result<Vec<Vec<f32>>> {
    let mut rows: Vec<Vec<f32>> = logits.to_vec2()?;
    for row in &mut rows {
        for (value, masked) in row.iter_mut().zip(mask) {
            *value += masked;
        }
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|value| (value - max).exp()).sum();
        let log_sum = max + sum.ln();
        for value in row.iter_mut() {
            *value -= log_sum;
        }
    }
    Ok(rows)
}
