//! Whisper's text decoder, written for decoding many sequences at once: each step feeds
//! only the new token of every sequence (self-attention keys and values are cached and
//! reordered as beams are), and the encoder's keys and values are computed once per window
//! and shared by all of that window's beams. candle's own decoder recomputes the whole
//! sequence at every step and copies the audio per sequence; this one does neither. The
//! weights are the same, under the same names; on the CPU, those a step multiplies are
//! kept as `BlockedMatrix`es.

use candle_core::{Module as _, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::whisper::Config;

use super::{
    blocked::BlockedMatrix,
    ops::{
        gelu_in_place, linear, log_sum_exp, merge_heads, norm, softmax_last_dim_in_place,
        split_heads,
    },
};

/// A linear layer applied at every step: a blocked product on the CPU, candle's elsewhere.
enum StepLinear {
    Blocked(BlockedMatrix),
    Candle(Linear),
}

impl StepLinear {
    fn load(inputs: usize, outputs: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let cpu = vb.device().is_cpu();
        let linear = if bias {
            candle_nn::linear(inputs, outputs, vb)?
        } else {
            candle_nn::linear_no_bias(inputs, outputs, vb)?
        };
        Ok(if cpu {
            Self::Blocked(BlockedMatrix::new(linear.weight(), linear.bias())?)
        } else {
            Self::Candle(linear)
        })
    }

    /// `[n, t, inputs]` → `[n, t, outputs]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle(layer) => linear(layer, x),
            Self::Blocked(matrix) => {
                let (n, t, _) = x.dims3()?;
                let product = matrix.multiply(&x.flatten_all()?.to_vec1()?);
                Tensor::from_vec(product, (n, t, matrix.rows()), x.device())
            }
        }
    }
}

/// The token embeddings, which also make the output projection (the logits).
enum Tokens {
    Blocked(BlockedMatrix),
    Candle(Embedding),
}

impl Tokens {
    /// `[n, t]` token ids → `[n, t, d]`.
    fn embed(&self, tokens: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle(embedding) => embedding.forward(tokens),
            Self::Blocked(table) => {
                let (n, t) = tokens.dims2()?;
                let ids: Vec<u32> = tokens.flatten_all()?.to_vec1()?;
                let rows: Vec<f32> = ids.iter().flat_map(|id| table.row(*id as usize)).collect();
                Tensor::from_vec(rows, (n, t, ()), tokens.device())
            }
        }
    }

    /// `[n, d]` → each row's logits over the vocabulary.
    fn logits(&self, hidden: &Tensor) -> Result<Vec<Vec<f32>>> {
        match self {
            Self::Candle(embedding) => embedding.embeddings().matmul(&hidden.t()?)?.t()?.to_vec2(),
            Self::Blocked(table) => Ok(table
                .multiply(&hidden.flatten_all()?.to_vec1()?)
                .chunks_exact(table.rows())
                .map(<[f32]>::to_vec)
                .collect()),
        }
    }
}

struct Layer {
    self_norm: LayerNorm,
    query: StepLinear,
    key: StepLinear,
    value: StepLinear,
    out: StepLinear,
    cross_norm: LayerNorm,
    cross_query: StepLinear,
    /// Applied once per window to the encoder's output: candle's kernel suits that shape.
    cross_key: Linear,
    cross_value: Linear,
    cross_out: StepLinear,
    mlp_norm: LayerNorm,
    fc1: StepLinear,
    fc2: StepLinear,
}

/// The decoder's weights.
pub struct TextDecoder {
    tokens: Tokens,
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
                    query: StepLinear::load(d, d, true, attn.pp("q_proj"))?,
                    key: StepLinear::load(d, d, false, attn.pp("k_proj"))?,
                    value: StepLinear::load(d, d, true, attn.pp("v_proj"))?,
                    out: StepLinear::load(d, d, true, attn.pp("out_proj"))?,
                    cross_norm: norm(d, vb.pp("encoder_attn_layer_norm"))?,
                    cross_query: StepLinear::load(d, d, true, cross.pp("q_proj"))?,
                    cross_key: candle_nn::linear_no_bias(d, d, cross.pp("k_proj"))?,
                    cross_value: candle_nn::linear(d, d, cross.pp("v_proj"))?,
                    cross_out: StepLinear::load(d, d, true, cross.pp("out_proj"))?,
                    mlp_norm: norm(d, vb.pp("final_layer_norm"))?,
                    fc1: StepLinear::load(d, 4 * d, true, vb.pp("fc1"))?,
                    fc2: StepLinear::load(4 * d, d, true, vb.pp("fc2"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            tokens: {
                let embedding = candle_nn::embedding(config.vocab_size, d, vb.pp("embed_tokens"))?;
                if vb.device().is_cpu() {
                    Tokens::Blocked(BlockedMatrix::new(embedding.embeddings(), None)?)
                } else {
                    Tokens::Candle(embedding)
                }
            },
            positions: vb.get((config.max_target_positions, d), "embed_positions.weight")?,
            layers,
            norm: norm(d, vb.pp("layer_norm"))?,
            heads: config.decoder_attention_heads,
        })
    }

    /// The encoder's keys and values for every layer, from its output `[windows, frames, d]`.
    pub fn audio_context(&self, audio: &Tensor) -> Result<AudioContext> {
        let mut keys = Vec::with_capacity(self.layers.len());
        let mut values = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            keys.push(
                split_heads(&linear(&layer.cross_key, audio)?, self.heads)?.t()?.contiguous()?,
            );
            values.push(split_heads(&linear(&layer.cross_value, audio)?, self.heads)?);
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
    ) -> Result<Vec<Vec<f32>>> {
        let (sequences, t) = tokens.dims2()?;
        let offset = cache.tokens();
        let per_window = sequences / audio.windows.max(1);
        let mut x =
            self.tokens.embed(tokens)?.broadcast_add(&self.positions.narrow(0, offset, t)?)?;
        let scale = 1.0 / ((x.dim(2)? / self.heads) as f64).sqrt();
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
            let q = split_heads(&(layer.query.forward(&h)? * scale)?, self.heads)?;
            let mut k = split_heads(&layer.key.forward(&h)?, self.heads)?;
            let mut v = split_heads(&layer.value.forward(&h)?, self.heads)?;
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
            let attended = softmax_last_dim_in_place(weights)?.matmul(&v)?;
            x = (x + layer.out.forward(&merge_heads(&attended)?)?)?;

            // Cross-attention: a window's sequences side by side against its audio.
            let h = layer.cross_norm.forward(&x)?;
            let q = split_heads(&(layer.cross_query.forward(&h)? * scale)?, self.heads)?;
            let (_, heads, _, head_dim) = q.dims4()?;
            let q = q
                .reshape((audio.windows, per_window, heads, t, head_dim))?
                .transpose(1, 2)?
                .reshape((audio.windows, heads, per_window * t, head_dim))?;
            let weights = q.matmul(&audio.keys[index])?;
            let attended = softmax_last_dim_in_place(weights)?.matmul(&audio.values[index])?;
            let attended = attended
                .reshape((audio.windows, heads, per_window, t, head_dim))?
                .transpose(1, 2)?
                .reshape((sequences, heads, t, head_dim))?;
            x = (x + layer.cross_out.forward(&merge_heads(&attended)?)?)?;

            let h = layer.mlp_norm.forward(&x)?;
            x = (&x + layer.fc2.forward(&gelu_in_place(layer.fc1.forward(&h)?)?)?)?;
        }
        let last = self.norm.forward(&x.narrow(1, t - 1, 1)?.squeeze(1)?)?;
        // The output projection shares the token embeddings.
        self.tokens.logits(&last)
    }
}

/// Log-probabilities over the vocabulary of `logits` plus `mask` (0, or -inf for tokens
/// never to emit), per row; computed here rather than as tensor operations, which cost
/// more in dispatch than in arithmetic at this size.
pub fn log_probs(mut rows: Vec<Vec<f32>>, mask: &[f32]) -> Vec<Vec<f32>> {
    for row in &mut rows {
        for (value, masked) in row.iter_mut().zip(mask) {
            *value += masked;
        }
        let log_sum = log_sum_exp(row);
        for value in row.iter_mut() {
            *value -= log_sum;
        }
    }
    rows
}
