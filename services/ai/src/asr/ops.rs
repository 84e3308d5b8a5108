//! The operations Whisper's encoder and decoder share. Softmax and GELU are computed here
//! rather than by candle: its CPU versions call libm's scalar `exp` and `tanh` once per
//! element, and the encoder's attention alone takes tens of millions of them per window.
//! These are written so the compiler vectorises them, for the widest instructions the CPU
//! has (chosen at run time), and work in place on tensors just computed.

use candle_core::{
    CpuStorage, D, InplaceOp1, Layout, Result, Tensor, backend::BackendStorage as _,
};
use candle_nn::{LayerNorm, Linear, Module as _};
use multiversion::multiversion;

/// The lanes the row loops keep apart, so that sums and maxima vectorise.
const LANES: usize = 16;

pub fn norm(size: usize, vb: candle_nn::VarBuilder) -> Result<LayerNorm> {
    candle_nn::layer_norm(size, 1e-5, vb)
}

/// `layer` applied to every row of `x`, `[n, t, d]`, as one matrix product. (candle's
/// `Linear` multiplies each of the `n` sequences apart, and the matrix kernel repacks the
/// weights for each: five times a step for five beams.)
pub fn linear(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    let (n, t, d) = x.dims3()?;
    layer.forward(&x.reshape((n * t, d))?)?.reshape((n, t, ()))
}

/// `[n, t, d]` → `[n, heads, t, d / heads]`.
pub fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (n, t, d) = x.dims3()?;
    x.reshape((n, t, heads, d / heads))?.transpose(1, 2)?.contiguous()
}

/// `[n, heads, t, head_dim]` → `[n, t, d]`.
pub fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (n, heads, t, head_dim) = x.dims4()?;
    x.transpose(1, 2)?.reshape((n, t, heads * head_dim))
}

/// Softmax over the last dimension of `x`, which it overwrites: `x` must be a tensor the
/// caller just computed and shares with nothing (a product of attention scores).
pub fn softmax_last_dim_in_place(x: Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return candle_nn::ops::softmax_last_dim(&x);
    }
    let x = x.contiguous()?;
    x.inplace_op1(&Softmax { width: x.dim(D::Minus1)? })?;
    Ok(x)
}

/// GELU (the exact one, with erf, as Whisper was trained with), overwriting `x`, which must
/// be a tensor the caller just computed and shares with nothing.
pub fn gelu_in_place(x: Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return x.gelu_erf();
    }
    let x = x.contiguous()?;
    x.inplace_op1(&Gelu)?;
    Ok(x)
}

/// The contiguous f32 values of a CPU tensor's storage.
fn values<'a>(storage: &'a mut CpuStorage, layout: &Layout) -> Result<&'a mut [f32]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("expected a contiguous tensor".into()))?;
    match storage {
        CpuStorage::F32(data) => Ok(&mut data[start..end]),
        other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "whisper ops")),
    }
}

struct Softmax {
    width: usize,
}

impl InplaceOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax-last-dim"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let values = values(storage, layout)?;
        if self.width > 0 {
            for row in values.chunks_exact_mut(self.width) {
                softmax(row);
            }
        }
        Ok(())
    }
}

struct Gelu;

impl InplaceOp1 for Gelu {
    fn name(&self) -> &'static str {
        "gelu-erf"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        gelu(values(storage, layout)?);
        Ok(())
    }
}

/// `row` ← softmax(`row`).
#[multiversion(targets = "simd")]
pub fn softmax(row: &mut [f32]) {
    let max = max(row);
    let mut sums = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (value, sum) in chunk.iter_mut().zip(&mut sums) {
            *value = exp(*value - max);
            *sum += *value;
        }
    }
    for value in chunks.into_remainder() {
        *value = exp(*value - max);
        sums[0] += *value;
    }
    let scale = 1.0 / sums.iter().sum::<f32>();
    for value in row.iter_mut() {
        *value *= scale;
    }
}

/// ln Σ exp(`row`): what turns logits into log-probabilities. −∞ for an empty row.
#[multiversion(targets = "simd")]
pub fn log_sum_exp(row: &[f32]) -> f32 {
    let max = max(row);
    if max == f32::NEG_INFINITY {
        return max;
    }
    let mut sums = [0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (value, sum) in chunk.iter().zip(&mut sums) {
            *sum += exp(*value - max);
        }
    }
    for value in chunks.remainder() {
        sums[0] += exp(*value - max);
    }
    max + sums.iter().sum::<f32>().ln()
}

/// `values` ← GELU(`values`) = x · Φ(x), Φ the standard normal's distribution function.
#[multiversion(targets = "simd")]
pub fn gelu(values: &mut [f32]) {
    for value in values {
        *value *= 0.5 * (1.0 + erf(*value * std::f32::consts::FRAC_1_SQRT_2));
    }
}

#[inline(always)]
fn max(row: &[f32]) -> f32 {
    let mut maxima = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (value, max) in chunk.iter().zip(&mut maxima) {
            *max = if *value > *max { *value } else { *max };
        }
    }
    let tail = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    maxima.into_iter().fold(tail, f32::max)
}

/// eˣ to within 2 units in the last place, without branches, so that a loop of it
/// vectorises: e^x = 2^n · e^r with |r| ≤ ln 2 / 2, e^r by its Taylor series to r⁷.
/// Below −87 it returns about 1e-38 rather than 0 (−∞ included), which a sum of
/// probabilities does not notice.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 · 2²³ rounds to the nearest integer in the float's own bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// erf(x) within 1.5 · 10⁻⁷ (Abramowitz and Stegun, 7.1.26), without branches.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    (1.0 - poly * exp(-z * z)).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_standard_library() {
        for i in -8_000..=8_000 {
            let x = i as f32 / 100.0;
            let (fast, exact) = (exp(x), x.exp());
            assert!((fast - exact).abs() <= exact * 3e-7, "exp({x}): {fast} against {exact}");
        }
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn gelu_matches_its_definition() {
        // Φ(x) from the complementary error function, in f64.
        let phi = |x: f64| 0.5 * libm_erfc(-x / std::f64::consts::SQRT_2);
        let mut values: Vec<f32> = (-600..=600).map(|i| i as f32 / 100.0).collect();
        let inputs = values.clone();
        gelu(&mut values);
        for (x, y) in inputs.into_iter().zip(values) {
            let exact = x as f64 * phi(x as f64);
            assert!((y as f64 - exact).abs() < 2e-6, "gelu({x}): {y} against {exact}");
        }
    }

    /// erfc by its continued fraction for large |x| and series otherwise, in f64: a
    /// reference independent of the approximation under test.
    fn libm_erfc(x: f64) -> f64 {
        if x < 0.0 {
            return 2.0 - libm_erfc(-x);
        }
        if x < 3.0 {
            // erf(x) = 2/√π Σ (−1)ⁿ x²ⁿ⁺¹ / (n! (2n+1))
            let (mut term, mut sum) = (x, x);
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            return 1.0 - 2.0 / std::f64::consts::PI.sqrt() * sum;
        }
        // Lentz's continued fraction.
        let mut fraction = 0.0;
        for k in (1..100).rev() {
            fraction = (k as f64 / 2.0) / (x + fraction);
        }
        (-x * x).exp() / std::f64::consts::PI.sqrt() / (x + fraction)
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_the_order() {
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
        row[3] = f32::NEG_INFINITY;
        let logits = row.clone();
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[3] < 1e-30, "a masked logit has no weight");
        let exact_sum: f64 =
            logits.iter().filter(|v| v.is_finite()).map(|v| (*v as f64).exp()).sum();
        for (p, logit) in row.iter().zip(&logits).filter(|(_, l)| l.is_finite()) {
            let exact = (*logit as f64).exp() / exact_sum;
            assert!((*p as f64 - exact).abs() < 1e-6 * exact.max(1e-3));
        }
        let logits = [1.0, 2.0, 3.0];
        let expected = logits.iter().map(|v: &f32| v.exp()).sum::<f32>().ln();
        assert!((log_sum_exp(&logits) - expected).abs() < 1e-6);
    }

    #[test]
    fn the_tensor_ops_agree_with_candle() -> Result<()> {
        let device = candle_core::Device::Cpu;
        let x = Tensor::arange(-50f32, 50.0, &device)?.affine(0.1, 0.0)?.reshape((4, 25))?;
        let ours = softmax_last_dim_in_place(x.clone().contiguous()?.affine(1.0, 0.0)?)?;
        let theirs = candle_nn::ops::softmax_last_dim(&x)?;
        let difference = (ours - theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(difference < 1e-6, "softmax differs by {difference}");
        let ours = gelu_in_place(x.affine(1.0, 0.0)?)?;
        let difference = (ours - x.gelu_erf()?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(difference < 1e-5, "gelu differs by {difference}");
        Ok(())
    }
}
