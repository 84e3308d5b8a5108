//! The decoder's weights, laid out for what the decoder does with them: at each step it
//! multiplies a handful of vectors (one per beam) by every weight matrix, and by the token
//! embeddings for the logits. That reads all of its weights once a step, so the step costs
//! what reading them costs. Here they are float16, as the model file has them (nothing is
//! lost), half the bytes of float32; and grouped in blocks of 16 output rows stored column
//! by column, so that a block's products are 16-lane multiply-adds with no sums across
//! lanes, and no copy of the weights is made per product (a matrix kernel repacks them).

use candle_core::{DType, Result, Tensor};
use half::f16;
use multiversion::multiversion;
use rayon::prelude::*;

/// Output rows per block: one 512-bit vector of f32.
const BLOCK: usize = 16;
/// Blocks per parallel task: enough work to be worth handing to another core.
const BLOCKS_PER_TASK: usize = 8;

/// A `[rows, cols]` matrix (and optional bias) in float16 blocks of 16 rows.
pub struct BlockedMatrix {
    rows: usize,
    cols: usize,
    /// Block `b`, column `c`, lane `l` holds row `16 b + l`, column `c` (zero past `rows`).
    blocks: Vec<f16>,
    bias: Option<Vec<f32>>,
}

impl BlockedMatrix {
    /// From a `[rows, cols]` weight and an optional `[rows]` bias (a linear layer's).
    pub fn new(weight: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        let (rows, cols) = weight.dims2()?;
        let weight: Vec<Vec<f16>> = weight.to_dtype(DType::F16)?.to_vec2()?;
        let count = rows.div_ceil(BLOCK);
        let mut blocks = vec![f16::ZERO; count * cols * BLOCK];
        for (row, values) in weight.iter().enumerate() {
            let (block, lane) = (row / BLOCK, row % BLOCK);
            for (col, value) in values.iter().enumerate() {
                blocks[(block * cols + col) * BLOCK + lane] = *value;
            }
        }
        let bias = bias.map(|bias| bias.to_dtype(DType::F32)?.to_vec1()).transpose()?;
        Ok(Self { rows, cols, blocks, bias })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row `row` (a token's embedding, when the matrix is the embeddings).
    pub fn row(&self, row: usize) -> Vec<f32> {
        let (block, lane) = (row / BLOCK, row % BLOCK);
        let start = block * self.cols * BLOCK + lane;
        self.blocks[start..].iter().step_by(BLOCK).take(self.cols).map(|v| v.to_f32()).collect()
    }

    /// `inputs` is `n` vectors of `cols` values, one after another; the result is the `n`
    /// products (each `rows` values, plus the bias), one after another.
    pub fn multiply(&self, inputs: &[f32]) -> Vec<f32> {
        let (rows, cols) = (self.rows, self.cols);
        let n = inputs.len() / cols;
        let task = BLOCKS_PER_TASK * cols * BLOCK;
        // Products block by block, `[block][input][lane]`, then put in input order.
        let mut by_block = vec![0f32; self.blocks.len() / cols * n];
        by_block
            .par_chunks_mut(BLOCKS_PER_TASK * n * BLOCK)
            .zip(self.blocks.par_chunks(task))
            .for_each(|(products, blocks)| {
                for (products, block) in
                    products.chunks_exact_mut(n * BLOCK).zip(blocks.chunks_exact(cols * BLOCK))
                {
                    block_products(block, inputs, cols, products);
                }
            });
        let mut out = vec![0f32; n * rows];
        for (block, products) in by_block.chunks_exact(n * BLOCK).enumerate() {
            let first = block * BLOCK;
            let lanes = BLOCK.min(rows - first);
            for (input, lanes_out) in products.chunks_exact(BLOCK).enumerate() {
                out[input * rows + first..][..lanes].copy_from_slice(&lanes_out[..lanes]);
            }
        }
        if let Some(bias) = &self.bias {
            for product in out.chunks_exact_mut(rows) {
                for (value, bias) in product.iter_mut().zip(bias) {
                    *value += bias;
                }
            }
        }
        out
    }
}

/// One block's products with every input: `products[i][l]` = Σ_c `block[c][l]` ·
/// `inputs[i][c]`. Up to eight inputs share each column of the block as it is read (and
/// widened), so a beam search's step reads the block once.
#[multiversion(targets = "simd")]
fn block_products(block: &[f16], inputs: &[f32], cols: usize, products: &mut [f32]) {
    const GROUP: usize = 8;
    for (inputs, products) in inputs.chunks(GROUP * cols).zip(products.chunks_mut(GROUP * BLOCK)) {
        match inputs.len() / cols {
            1 => products_of::<1>(block, inputs, cols, products),
            2 => products_of::<2>(block, inputs, cols, products),
            3 => products_of::<3>(block, inputs, cols, products),
            4 => products_of::<4>(block, inputs, cols, products),
            5 => products_of::<5>(block, inputs, cols, products),
            6 => products_of::<6>(block, inputs, cols, products),
            7 => products_of::<7>(block, inputs, cols, products),
            _ => products_of::<GROUP>(block, inputs, cols, products),
        }
    }
}

/// A float16 as f32, exactly, without branches (so that a loop of it vectorises) and
/// without making subnormal f32s (which would slow the products that use them).
#[inline(always)]
fn widen(half: f16) -> f32 {
    let bits = half.to_bits() as u32;
    let magnitude = bits & 0x7fff;
    // Normal: the exponent rebased from 15 to 127 (112 more), the mantissa moved up 13 bits.
    let normal = f32::from_bits((magnitude << 13) + (112 << 23));
    // Subnormal (exponent 0): mantissa × 2⁻²⁴, and zero stays zero.
    let subnormal = (magnitude & 0x3ff) as f32 * (1.0 / 16_777_216.0);
    let value = if magnitude < 0x400 { subnormal } else { normal };
    f32::from_bits(value.to_bits() | ((bits & 0x8000) << 16))
}

#[inline(always)]
fn products_of<const N: usize>(block: &[f16], inputs: &[f32], cols: usize, products: &mut [f32]) {
    let block = &block[..cols * BLOCK];
    let inputs: [&[f32]; N] = std::array::from_fn(|input| &inputs[input * cols..][..cols]);
    let mut sums = [[0f32; BLOCK]; N];
    for col in 0..cols {
        let halves: &[f16; BLOCK] =
            block[col * BLOCK..][..BLOCK].try_into().expect("a column is a block wide");
        let mut weights = [0f32; BLOCK];
        for (weight, half) in weights.iter_mut().zip(halves) {
            *weight = widen(*half);
        }
        for (sums, input) in sums.iter_mut().zip(inputs) {
            let x = input[col];
            for lane in 0..BLOCK {
                sums[lane] += x * weights[lane];
            }
        }
    }
    for (products, sums) in products.chunks_exact_mut(BLOCK).zip(&sums) {
        products.copy_from_slice(sums);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn every_float16_widens_exactly() {
        for bits in 0..=u16::MAX {
            let half = f16::from_bits(bits);
            if half.is_finite() {
                assert_eq!(widen(half).to_bits(), half.to_f32().to_bits(), "{bits:#06x}");
            }
        }
    }

    #[test]
    fn products_match_a_matrix_product_for_any_number_of_inputs() -> Result<()> {
        let device = Device::Cpu;
        // Rows not a multiple of a block or a task; values exact in float16.
        for (rows, cols, n) in [(37, 24, 1), (300, 40, 5), (19, 8, 9)] {
            let weight = Tensor::arange(0u32, (rows * cols) as u32, &device)?
                .to_dtype(DType::F32)?
                .affine(1.0, 0.0)?
                .reshape((rows, cols))?;
            let weight =
                ((weight.clone() * 7.0)?.sin()? * 64.0)?.round()?.affine(1.0 / 64.0, 0.0)?;
            let bias = Tensor::arange(0f32, rows as f32, &device)?.affine(0.5, -3.0)?;
            let inputs =
                Tensor::arange(0f32, (n * cols) as f32, &device)?.cos()?.reshape((n, cols))?;
            let blocked = BlockedMatrix::new(&weight, Some(&bias))?;
            let ours = blocked.multiply(&inputs.flatten_all()?.to_vec1()?);
            let theirs: Vec<f32> =
                inputs.matmul(&weight.t()?)?.broadcast_add(&bias)?.flatten_all()?.to_vec1()?;
            assert_eq!(ours.len(), theirs.len());
            for (a, b) in ours.iter().zip(&theirs) {
                assert!((a - b).abs() < 1e-4, "{rows}×{cols}, {n} inputs: {a} against {b}");
            }
            let row: Vec<f32> = weight.get(rows - 1)?.to_vec1()?;
            assert_eq!(blocked.row(rows - 1), row);
        }
        Ok(())
    }
}
