//! Reads a Whisper model saved by CTranslate2 (`model.bin`) and maps its tensors onto the
//! names candle's Whisper expects.
//!
//! The file (binary version 6, `WhisperSpec`), all integers little-endian:
//!
//! ```text
//! u32 version · str spec name · u32 spec revision
//! u32 count, then per variable: str name · u8 rank · u32 × rank dims · u8 dtype ·
//!                               u32 byte length · bytes
//! u32 count, then per alias:    str alias · str variable
//! str: u16 length (with its trailing NUL) · bytes
//! ```
//!
//! CTranslate2 fuses attention projections: an encoder or decoder self-attention's
//! `linear_0` holds query, key and value stacked (3d × d); a decoder cross-attention's
//! `linear_0` is the query and `linear_1` key and value stacked (2d × d). Whisper's key
//! projection has no bias, so the key part of a fused bias is zero and is dropped.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::whisper::Config;

#[derive(Debug, thiserror::Error)]
pub enum Ct2Error {
    #[error("the model file is truncated or malformed at byte {0}")]
    Malformed(usize),
    #[error("binary version {0} is not one this reader knows (5 or 6)")]
    Version(u32),
    #[error("the model is a {0}, not a WhisperSpec")]
    Spec(String),
    #[error(
        "{name} is stored as {dtype}, which this reader does not load (float32, float16 or bfloat16 only: convert with --quantization float16)"
    )]
    DType { name: String, dtype: u8 },
    #[error("the model has no {0}")]
    Missing(String),
    #[error("{0}")]
    Shape(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// One stored variable, as read.
#[derive(Debug)]
struct Variable {
    dims: Vec<usize>,
    dtype: u8,
    bytes: std::ops::Range<usize>,
}

const FLOAT32: u8 = 0;
const INT8: u8 = 1;
const INT16: u8 = 2;
const FLOAT16: u8 = 4;
const BFLOAT16: u8 = 5;

/// A parsed `model.bin`: its variables by name, aliases resolved.
pub struct Ct2Model {
    data: Vec<u8>,
    variables: HashMap<String, Variable>,
}

impl std::fmt::Debug for Ct2Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ct2Model").field("variables", &self.variables.len()).finish()
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn bytes(&mut self, len: usize) -> Result<std::ops::Range<usize>, Ct2Error> {
        let end = self.at.checked_add(len).filter(|end| *end <= self.data.len());
        let end = end.ok_or(Ct2Error::Malformed(self.at))?;
        let range = self.at..end;
        self.at = end;
        Ok(range)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Ct2Error> {
        let range = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.data[range]);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Ct2Error> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Ct2Error> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Ct2Error> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, Ct2Error> {
        let at = self.at;
        let len = usize::from(self.u16()?);
        let range = self.bytes(len)?;
        let bytes = &self.data[range];
        let text = bytes.strip_suffix(b"\0").unwrap_or(bytes);
        String::from_utf8(text.to_vec()).map_err(|_| Ct2Error::Malformed(at))
    }
}

impl Ct2Model {
    /// Parses a model file's bytes.
    pub fn parse(data: Vec<u8>) -> Result<Self, Ct2Error> {
        let mut reader = Reader { data: &data, at: 0 };
        let version = reader.u32()?;
        if !(5..=6).contains(&version) {
            return Err(Ct2Error::Version(version));
        }
        let spec = reader.string()?;
        if spec != "WhisperSpec" {
            return Err(Ct2Error::Spec(spec));
        }
        let _revision = reader.u32()?;
        let count = reader.u32()?;
        let mut variables = HashMap::new();
        for _ in 0..count {
            let name = reader.string()?;
            let rank = usize::from(reader.u8()?);
            let dims = (0..rank)
                .map(|_| reader.u32().map(|d| d as usize))
                .collect::<Result<Vec<_>, _>>()?;
            let dtype = reader.u8()?;
            let len = reader.u32()? as usize;
            let bytes = reader.bytes(len)?;
            variables.insert(name, Variable { dims, dtype, bytes });
        }
        let aliases = reader.u32()?;
        for _ in 0..aliases {
            let alias = reader.string()?;
            let target = reader.string()?;
            let variable = variables.get(&target).ok_or_else(|| Ct2Error::Missing(target))?;
            let copy = Variable {
                dims: variable.dims.clone(),
                dtype: variable.dtype,
                bytes: variable.bytes.clone(),
            };
            variables.insert(alias, copy);
        }
        Ok(Self { data, variables })
    }

    fn variable(&self, name: &str) -> Result<&Variable, Ct2Error> {
        self.variables.get(name).ok_or_else(|| Ct2Error::Missing(name.to_owned()))
    }

    /// A small integer setting, such as `encoder/num_heads`.
    fn integer(&self, name: &str) -> Result<usize, Ct2Error> {
        let variable = self.variable(name)?;
        let bytes = &self.data[variable.bytes.clone()];
        let value = match (variable.dtype, bytes) {
            (INT8, [b]) => i64::from(*b as i8),
            (INT16, [a, b]) => i64::from(i16::from_le_bytes([*a, *b])),
            (3, [a, b, c, d]) => i64::from(i32::from_le_bytes([*a, *b, *c, *d])),
            _ => return Err(Ct2Error::Shape(format!("{name} is not a scalar integer"))),
        };
        usize::try_from(value).map_err(|_| Ct2Error::Shape(format!("{name} is negative")))
    }

    /// A float tensor, converted to `dtype` on `device`.
    fn tensor(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor, Ct2Error> {
        let variable = self.variable(name)?;
        let stored = match variable.dtype {
            FLOAT32 => DType::F32,
            FLOAT16 => DType::F16,
            BFLOAT16 => DType::BF16,
            other => return Err(Ct2Error::DType { name: name.to_owned(), dtype: other }),
        };
        let bytes = &self.data[variable.bytes.clone()];
        let expected = variable.dims.iter().product::<usize>() * stored.size_in_bytes();
        if bytes.len() != expected {
            return Err(Ct2Error::Shape(format!(
                "{name} holds {} bytes, not the {expected} its shape needs",
                bytes.len()
            )));
        }
        let tensor = Tensor::from_raw_buffer(bytes, stored, &variable.dims, &Device::Cpu)?;
        Ok(tensor.to_dtype(dtype)?.to_device(device)?)
    }

    /// The model's dimensions, read off its tensors.
    pub fn config(&self) -> Result<Config, Ct2Error> {
        let dims = |name: &str| self.variable(name).map(|v| v.dims.clone());
        let embeddings = dims("decoder/embeddings/weight")?;
        let conv1 = dims("encoder/conv1/weight")?;
        let positions = dims("decoder/position_encodings/encodings")?;
        let [vocab_size, d_model] = embeddings[..] else {
            return Err(Ct2Error::Shape("decoder/embeddings/weight is not a matrix".into()));
        };
        let layers = |side: &str| {
            (0..)
                .take_while(|i| {
                    self.variables.contains_key(&format!("{side}/layer_{i}/ffn/linear_0/weight"))
                })
                .count()
        };
        let source_positions = dims("encoder/position_encodings/encodings")
            .ok()
            .and_then(|d| d.first().copied())
            .unwrap_or(1500);
        Ok(Config {
            num_mel_bins: conv1
                .get(1)
                .copied()
                .ok_or_else(|| Ct2Error::Shape("conv1 has no input channels".into()))?,
            max_source_positions: source_positions,
            d_model,
            encoder_attention_heads: self.integer("encoder/num_heads")?,
            encoder_layers: layers("encoder"),
            vocab_size,
            max_target_positions: positions.first().copied().unwrap_or(448),
            decoder_attention_heads: self.integer("decoder/num_heads")?,
            decoder_layers: layers("decoder"),
            suppress_tokens: Vec::new(),
        })
    }

    /// Every weight under the names of candle's Whisper (`model.encoder.conv1.weight`, …),
    /// fused projections split, in `dtype` on `device`.
    pub fn candle_weights(
        &self,
        dtype: DType,
        device: &Device,
    ) -> Result<HashMap<String, Tensor>, Ct2Error> {
        let config = self.config()?;
        let d = config.d_model;
        let mut out = HashMap::new();
        let mut put = |name: String, tensor: Tensor| {
            out.insert(name, tensor);
        };
        let get = |name: &str| self.tensor(name, dtype, device);
        let norm =
            |from: &str, to: &str, put: &mut dyn FnMut(String, Tensor)| -> Result<(), Ct2Error> {
                put(format!("{to}.weight"), get(&format!("{from}/gamma"))?);
                put(format!("{to}.bias"), get(&format!("{from}/beta"))?);
                Ok(())
            };
        let linear =
            |from: &str, to: &str, put: &mut dyn FnMut(String, Tensor)| -> Result<(), Ct2Error> {
                put(format!("{to}.weight"), get(&format!("{from}/weight"))?);
                put(format!("{to}.bias"), get(&format!("{from}/bias"))?);
                Ok(())
            };
        // Splits a stacked projection into `names` (`None` for a part without bias).
        let split = |from: &str,
                     to: &str,
                     parts: &[&str],
                     put: &mut dyn FnMut(String, Tensor)|
         -> Result<(), Ct2Error> {
            let weight = get(&format!("{from}/weight"))?;
            let bias = get(&format!("{from}/bias"))?;
            if weight.dims() != [parts.len() * d, d] || bias.dims() != [parts.len() * d] {
                return Err(Ct2Error::Shape(format!(
                    "{from} is {:?}, not {} stacked {d}×{d} projections",
                    weight.dims(),
                    parts.len()
                )));
            }
            for (i, part) in parts.iter().enumerate() {
                put(format!("{to}.{part}.weight"), weight.narrow(0, i * d, d)?.contiguous()?);
                if *part != "k_proj" {
                    put(format!("{to}.{part}.bias"), bias.narrow(0, i * d, d)?.contiguous()?);
                }
            }
            Ok(())
        };

        for side in ["encoder", "decoder"] {
            let layers =
                if side == "encoder" { config.encoder_layers } else { config.decoder_layers };
            for i in 0..layers {
                let from = format!("{side}/layer_{i}");
                let to = format!("model.{side}.layers.{i}");
                norm(
                    &format!("{from}/self_attention/layer_norm"),
                    &format!("{to}.self_attn_layer_norm"),
                    &mut put,
                )?;
                split(
                    &format!("{from}/self_attention/linear_0"),
                    &format!("{to}.self_attn"),
                    &["q_proj", "k_proj", "v_proj"],
                    &mut put,
                )?;
                linear(
                    &format!("{from}/self_attention/linear_1"),
                    &format!("{to}.self_attn.out_proj"),
                    &mut put,
                )?;
                if side == "decoder" {
                    norm(
                        &format!("{from}/attention/layer_norm"),
                        &format!("{to}.encoder_attn_layer_norm"),
                        &mut put,
                    )?;
                    linear(
                        &format!("{from}/attention/linear_0"),
                        &format!("{to}.encoder_attn.q_proj"),
                        &mut put,
                    )?;
                    split(
                        &format!("{from}/attention/linear_1"),
                        &format!("{to}.encoder_attn"),
                        &["k_proj", "v_proj"],
                        &mut put,
                    )?;
                    linear(
                        &format!("{from}/attention/linear_2"),
                        &format!("{to}.encoder_attn.out_proj"),
                        &mut put,
                    )?;
                }
                norm(
                    &format!("{from}/ffn/layer_norm"),
                    &format!("{to}.final_layer_norm"),
                    &mut put,
                )?;
                linear(&format!("{from}/ffn/linear_0"), &format!("{to}.fc1"), &mut put)?;
                linear(&format!("{from}/ffn/linear_1"), &format!("{to}.fc2"), &mut put)?;
            }
            norm(&format!("{side}/layer_norm"), &format!("model.{side}.layer_norm"), &mut put)?;
        }
        linear("encoder/conv1", "model.encoder.conv1", &mut put)?;
        linear("encoder/conv2", "model.encoder.conv2", &mut put)?;
        put("model.decoder.embed_tokens.weight".into(), get("decoder/embeddings/weight")?);
        put(
            "model.decoder.embed_positions.weight".into(),
            get("decoder/position_encodings/encodings")?,
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a model file in CTranslate2's layout.
    struct Writer(Vec<u8>);

    impl Writer {
        fn string(&mut self, text: &str) {
            self.0.extend_from_slice(&(text.len() as u16 + 1).to_le_bytes());
            self.0.extend_from_slice(text.as_bytes());
            self.0.push(0);
        }

        fn variable(&mut self, name: &str, dims: &[u32], dtype: u8, bytes: &[u8]) {
            self.string(name);
            self.0.push(dims.len() as u8);
            for d in dims {
                self.0.extend_from_slice(&d.to_le_bytes());
            }
            self.0.push(dtype);
            self.0.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            self.0.extend_from_slice(bytes);
        }
    }

    fn f16s(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect()
    }

    /// A one-layer Whisper of width 2 whose values say where they came from.
    fn tiny_model() -> Vec<u8> {
        let d = 2u32;
        let mut w = Writer(Vec::new());
        w.0.extend_from_slice(&6u32.to_le_bytes());
        w.string("WhisperSpec");
        w.0.extend_from_slice(&3u32.to_le_bytes());
        let mut variables: Vec<(String, Vec<u32>, u8, Vec<u8>)> = Vec::new();
        let mut matrix = |name: &str, rows: u32, cols: u32, first: f32| {
            let values: Vec<f32> = (0..rows * cols).map(|i| first + i as f32).collect();
            variables.push((name.to_owned(), vec![rows, cols], FLOAT16, f16s(&values)));
        };
        for side in ["encoder", "decoder"] {
            matrix(&format!("{side}/layer_0/self_attention/linear_0/weight"), 3 * d, d, 100.0);
            matrix(&format!("{side}/layer_0/ffn/linear_0/weight"), 4 * d, d, 0.0);
        }
        matrix("decoder/embeddings/weight", 5, d, 0.0);
        matrix("decoder/position_encodings/encodings", 4, d, 0.0);
        variables.push(("encoder/conv1/weight".into(), vec![d, 3, 3], FLOAT16, f16s(&[0.0; 18])));
        variables.push(("encoder/num_heads".into(), vec![], INT16, 1i16.to_le_bytes().to_vec()));
        variables.push(("decoder/num_heads".into(), vec![], INT16, 1i16.to_le_bytes().to_vec()));
        variables.push((
            "decoder/layer_0/self_attention/linear_0/bias".into(),
            vec![3 * d],
            FLOAT32,
            [1f32, 2.0, 0.0, 0.0, 5.0, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
        w.0.extend_from_slice(&(variables.len() as u32).to_le_bytes());
        for (name, dims, dtype, bytes) in &variables {
            w.variable(name, dims, *dtype, bytes);
        }
        w.0.extend_from_slice(&1u32.to_le_bytes());
        w.string("decoder/projection/weight");
        w.string("decoder/embeddings/weight");
        w.0
    }

    #[test]
    fn dimensions_are_read_off_the_tensors() {
        let model = Ct2Model::parse(tiny_model()).expect("parses");
        let config = model.config().expect("config");
        assert_eq!(config.d_model, 2);
        assert_eq!(config.vocab_size, 5);
        assert_eq!(config.num_mel_bins, 3);
        assert_eq!(config.encoder_layers, 1);
        assert_eq!(config.decoder_layers, 1);
        assert_eq!(config.encoder_attention_heads, 1);
        assert_eq!(config.max_target_positions, 4);
        assert!(model.variables.contains_key("decoder/projection/weight"), "aliases resolve");
    }

    #[test]
    fn fused_projections_split_in_order_and_the_key_bias_is_dropped() {
        let model = Ct2Model::parse(tiny_model()).expect("parses");
        let name = "decoder/layer_0/self_attention/linear_0";
        let weight = model.tensor(&format!("{name}/weight"), DType::F32, &Device::Cpu).expect("w");
        let q = weight.narrow(0, 0, 2).expect("q").flatten_all().expect("flat");
        assert_eq!(q.to_vec1::<f32>().expect("values"), vec![100.0, 101.0, 102.0, 103.0]);
        let v = weight.narrow(0, 4, 2).expect("v").flatten_all().expect("flat");
        assert_eq!(v.to_vec1::<f32>().expect("values"), vec![108.0, 109.0, 110.0, 111.0]);
        let bias = model.tensor(&format!("{name}/bias"), DType::F32, &Device::Cpu).expect("bias");
        assert_eq!(bias.to_vec1::<f32>().expect("values"), vec![1.0, 2.0, 0.0, 0.0, 5.0, 6.0]);
    }

    #[test]
    fn truncated_and_foreign_files_are_errors_not_panics() {
        let model = tiny_model();
        for cut in [0, 3, 10, model.len() / 2, model.len() - 1] {
            assert!(Ct2Model::parse(model[..cut].to_vec()).is_err(), "cut at {cut}");
        }
        let mut other = model.clone();
        other[0] = 9;
        assert!(matches!(Ct2Model::parse(other), Err(Ct2Error::Version(9))));
    }
}
