//! The two gradients of [`super::conv`]'s convolution on the same banded products, and the
//! bias gradient:
//!
//! - the input gradient is the same convolution of the output gradient with the flipped,
//!   transposed kernel;
//! - the weight gradient at tap `(a, b)` is `dY_wide · X_p[:, shift_ab ..]ᵀ` (the garbage
//!   columns of `dY_wide` set to zero), one product per band and tap, summed in a fixed order.
//!
//! Contract: as [`super::conv`] (row-major f32, stride 1, dilation 1, one group); the sums
//! are taken in an order fixed by the shape alone, so the results are the same bits at any
//! thread count.

#[cfg(target_arch = "x86_64")]
use std::mem::MaybeUninit;

use super::conv::{convolve, taps_of};
use super::elementwise::plane_sum;
use super::gemm::product;
use super::layout::Input;
use super::layout::{pad, wide_len, with_scratch, Bands, Shape};
use super::parallel;
use super::products::{Precision, Products};
use crate::After;

/// Whether [`input_gradient`] applies: the padding is at most the kernel's reach.
pub fn input_gradient_applies(shape: Shape) -> bool {
    shape.padding[0] < shape.kernel[0] && shape.padding[1] < shape.kernel[1]
}

/// The gradient of the input, `dX = conv(dY, W')` with `W'[c, o, a, b] = W[o, c, K_h−1−a,
/// K_w−1−b]` and padding `K − 1 − p` (stride 1).
///
/// # Shapes
/// - `output_grad`: `[N, C_out, H_out, W_out]`, `weight`: `[C_out, C_in, K_h, K_w]`
/// - output: `[N, C_in, H, W]`
pub fn input_gradient(
    output_grad: &[f32],
    weight: &[f32],
    shape: Shape,
    precision: Precision,
) -> Vec<f32> {
    let output_grad = Input::Floats(&[output_grad]);
    input_gradient_on(Products::best(precision), output_grad, weight, shape)
}

/// [`input_gradient`] by the given products, of the output gradient as floats or already
/// padded for them ([`Input`]).
pub(super) fn input_gradient_on(
    products: Products,
    output_grad: Input,
    weight: &[f32],
    shape: Shape,
) -> Vec<f32> {
    let [kernel_h, kernel_w] = shape.kernel;
    let c_in = shape.channels_in;
    let transposed = transposed(shape);
    // taps'[a·K_w + b][c][o] = W'[c, o, a, b]
    let taps = taps_of(transposed, |c, o, tap| {
        let (a, b) = (tap / kernel_w, tap % kernel_w);
        let flipped = (kernel_h - 1 - a) * kernel_w + (kernel_w - 1 - b);
        weight[(o * c_in + c) * shape.taps() + flipped]
    });
    convolve(
        products,
        output_grad,
        &taps,
        None,
        transposed,
        After::Nothing,
    )
}

/// The input gradient's convolution: of the output gradient (`C_out` channels, the output's
/// size) into `C_in` channels, with the padding that undoes the forward's (`K − 1 − p`).
pub(super) fn transposed(shape: Shape) -> Shape {
    let [kernel_h, kernel_w] = shape.kernel;
    Shape {
        batch: shape.batch,
        channels_in: shape.channels_out,
        size: shape.out_size(),
        channels_out: shape.channels_in,
        kernel: shape.kernel,
        padding: [
            kernel_h - 1 - shape.padding[0],
            kernel_w - 1 - shape.padding[1],
        ],
    }
}

/// The gradient of the weight, `dW[o, c, a, b] = Σ_bands Σ_q dY_wide[o, q] · X_p[c, shift_ab +
/// q]`: one product per band of output rows and tap, summed over runs of [`BANDS_PER_SUM`]
/// bands in parallel, then the runs' sums added in order, so the result does not depend on the
/// number of threads or their timing (a resumed training run repeats an uninterrupted one bit
/// for bit).
///
/// # Shapes
/// - `x`: `[N, C_in, H, W]`, `output_grad`: `[N, C_out, H_out, W_out]`
/// - output: `[C_out, C_in, K_h, K_w]`
pub fn weight_gradient(
    x: &[f32],
    output_grad: &[f32],
    shape: Shape,
    precision: Precision,
) -> Vec<f32> {
    weight_gradient_on(Products::best(precision), x, output_grad, shape)
}

/// [`weight_gradient`] by the given products (the bfloat16 ones where they take the shape,
/// else gemm: its long sums over pixels run well, an AVX-512 f32 version measured no faster).
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(super) fn weight_gradient_on(
    products: Products,
    x: &[f32],
    output_grad: &[f32],
    shape: Shape,
) -> Vec<f32> {
    let output_grad = OutputGrad::Floats(output_grad);
    #[cfg(target_arch = "x86_64")]
    if let Some(pairs) = PairProducts::of(products, shape) {
        return bf16_weight_gradient(pairs, x, output_grad, shape);
    }
    f32_weight_gradient(x, output_grad, shape)
}

/// [`weight_gradient`] on gemm's f32 products, of the output gradient as floats or padded
/// ([`OutputGrad::Padded`]).
///
/// # Panics
/// If the output gradient is bfloat16 pairs (a caller's bug).
pub(super) fn f32_weight_gradient(x: &[f32], output_grad: OutputGrad, shape: Shape) -> Vec<f32> {
    let [out_h, out_w] = shape.out_size();
    let [padded_h, padded_w] = shape.padded_size();
    let (out_plane, plane) = (out_h * out_w, padded_h * padded_w);
    let (c_in, c_out) = (shape.channels_in, shape.channels_out);
    let padded = pad(&[x], shape);
    let shifts = shape.shifts();
    // Per tap a C_out x C_in matrix stored column by column: sum[tap][c][o].
    let size = shape.taps() * c_out * c_in;
    let bands = Bands::of(shape);
    let accumulate = |mut sum: Vec<f32>, task: usize| {
        let (image, rows) = bands.band(task);
        let wide_len = wide_len(rows.len(), padded_w);
        with_scratch(wide_len * c_out, |grad| {
            // grad[q][o] = dY[image, o, rows.start + q / W_p, q % W_p], zero past W_out and
            // past the band's rows.
            grad[rows.len() * padded_w * c_out..].fill(0.0);
            match output_grad {
                OutputGrad::Floats(output_grad) => {
                    for (i, y) in rows.clone().enumerate() {
                        for x in 0..padded_w {
                            let q = i * padded_w + x;
                            let target = &mut grad[q * c_out..][..c_out];
                            if x < out_w {
                                let first = image * c_out * out_plane + y * out_w + x;
                                for (o, t) in target.iter_mut().enumerate() {
                                    *t = output_grad[first + o * out_plane];
                                }
                            } else {
                                target.fill(0.0);
                            }
                        }
                    }
                }
                // The band is one run per channel of the padded copy (see `OutputGrad`).
                OutputGrad::Padded(padded) => {
                    let run = rows.len() * padded_w;
                    for o in 0..c_out {
                        let first = band_start(shape, image * c_out + o, rows.start);
                        for (q, &v) in padded[first..][..run].iter().enumerate() {
                            grad[q * c_out + o] = v;
                        }
                    }
                }
                #[cfg(target_arch = "x86_64")]
                OutputGrad::Pairs { .. } => panic!("bfloat16 pairs given to the f32 products"),
            }
            let input = &padded[image * c_in * plane + rows.start * padded_w..];
            for (tap, &shift) in shifts.iter().enumerate() {
                let shifted = &input[shift..];
                // SAFETY: `sum`'s tap block holds C_out·C_in values; `grad` wide_len·C_out;
                // `shifted` reads channel c at q < wide_len, within `padded` as in `band`.
                unsafe {
                    product(
                        [c_out, c_in, wide_len],
                        (sum[tap * c_out * c_in..].as_mut_ptr(), c_out),
                        true,
                        (grad.as_ptr(), c_out),
                        (shifted.as_ptr(), plane),
                    );
                }
            }
        });
        sum
    };
    transpose_taps(sum_bands(bands.count(shape.batch), size, accumulate), shape)
}

/// The kernel gradient from `[tap][c][o]` (per tap a `C_out x C_in` matrix stored column by
/// column) to `[o][c][tap]`.
fn transpose_taps(sums: Vec<f32>, shape: Shape) -> Vec<f32> {
    transpose_columns(sums, shape.channels_out, shape)
}

/// [`transpose_taps`] from columns of `rows ≥ C_out` values, the rows past `C_out` left out.
fn transpose_columns(sums: Vec<f32>, rows: usize, shape: Shape) -> Vec<f32> {
    let (c_in, c_out, taps) = (shape.channels_in, shape.channels_out, shape.taps());
    let mut gradient = vec![0f32; c_out * c_in * taps];
    for (tap, block) in sums.chunks_exact(rows * c_in).enumerate() {
        for (c, column) in block.chunks_exact(rows).enumerate() {
            for (o, &value) in column[..c_out].iter().enumerate() {
                gradient[(o * c_in + c) * taps + tap] = value;
            }
        }
    }
    gradient
}

/// `Σ_task accumulate(·, task)` over `tasks` bands: runs of [`BANDS_PER_SUM`] bands folded in
/// parallel from zeros (`size` values), then the runs' sums added in order.
fn sum_bands(
    tasks: usize,
    size: usize,
    accumulate: impl Fn(Vec<f32>, usize) -> Vec<f32> + Sync + Send,
) -> Vec<f32> {
    let run = |first: usize| {
        (first..(first + BANDS_PER_SUM).min(tasks)).fold(vec![0f32; size], &accumulate)
    };
    let sums = parallel::map_indices(tasks.div_ceil(BANDS_PER_SUM), |i| run(i * BANDS_PER_SUM));
    let mut sums = sums.into_iter();
    let mut total = sums.next().unwrap_or_else(|| vec![0f32; size]);
    for sum in sums {
        total.iter_mut().zip(sum).for_each(|(t, s)| *t += s);
    }
    total
}

/// The weight gradient's products with bfloat16 operands.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) enum PairProducts {
    /// [`super::avx512_bf16::weight_products`].
    Dot,
    /// [`super::amx::weight_products`].
    #[cfg(target_os = "linux")]
    Tiles,
}

#[cfg(target_arch = "x86_64")]
impl PairProducts {
    /// The bfloat16 weight-gradient products of `products`, if they take `shape`.
    pub(super) fn of(products: Products, shape: Shape) -> Option<Self> {
        let (c_out, c_in) = (shape.channels_out, shape.channels_in);
        match products {
            Products::Avx512Bf16 => Some(Self::Dot),
            #[cfg(target_os = "linux")]
            Products::Amx if super::amx::applies_to_weight_gradient(c_out, c_in) => {
                Some(Self::Tiles)
            }
            _ => None,
        }
    }

    /// The output channels these products compute for `c_out`: the dot products take whole
    /// vectors of 16 (the rows past `c_out` get a zero output gradient, and are dropped).
    fn channels(self, c_out: usize) -> usize {
        match self {
            Self::Dot => super::avx512_bf16::weight_channels(c_out),
            #[cfg(target_os = "linux")]
            Self::Tiles => c_out,
        }
    }
}

/// [`weight_gradient`] with bfloat16 operands (the AVX512-BF16 dot products or the AMX tile
/// unit): the input and each band's output gradient in bfloat16, the sums f32, in the same
/// fixed order of bands.
#[cfg(target_arch = "x86_64")]
pub(super) fn bf16_weight_gradient(
    products: PairProducts,
    x: &[f32],
    output_grad: OutputGrad,
    shape: Shape,
) -> Vec<f32> {
    use super::bf16;
    let [out_h, out_w] = shape.out_size();
    let [padded_h, padded_w] = shape.padded_size();
    let (out_plane, plane) = (out_h * out_w, padded_h * padded_w);
    let (c_in, c_out) = (shape.channels_in, shape.channels_out);
    // The output channels the products compute (C_out, or more with zero gradients).
    let rows_out = products.channels(c_out);
    let padded = bf16::pad_bf16(x, shape);
    let shifts = shape.shifts();
    // Per tap a rows_out x C_in matrix stored column by column: sum[tap][c][o].
    let size = shape.taps() * rows_out * c_in;
    let bands = Bands::of(shape);
    let accumulate = |mut sum: Vec<f32>, task: usize| {
        let (image, rows) = bands.band(task);
        let len = wide_len(rows.len(), padded_w).next_multiple_of(bf16::WEIGHT_PIXELS);
        PAIR_SCRATCH.with(|scratch| {
            let (dy_pairs, wide) = &mut *scratch.borrow_mut();
            dy_pairs.resize(dy_pairs.len().max(rows_out * len / 2), 0);
            // Channel o's band in the wide layout, rows W_p apart, zeros past W_out.
            let dy = |o: usize, target: &mut [MaybeUninit<u16>]| match output_grad {
                _ if o >= c_out => target.fill(MaybeUninit::new(0)),
                OutputGrad::Floats(grad) => {
                    for (i, target) in target.chunks_exact_mut(padded_w).enumerate() {
                        let first = (image * c_out + o) * out_plane + (rows.start + i) * out_w;
                        let (inside, garbage) = target.split_at_mut(out_w);
                        bf16::bf16_row(&grad[first..][..out_w], inside);
                        garbage.fill(MaybeUninit::new(0));
                    }
                }
                OutputGrad::Padded(_) => panic!("padded f32 given to the bfloat16 products"),
                // The band is one run of the padded pairs (see `OutputGrad`).
                OutputGrad::Pairs { words, pairs } => {
                    let first = band_start(shape, image * pairs + o / 2, rows.start);
                    bf16::half_row(&words[first..][..target.len()], o % 2 == 1, target)
                }
            };
            let sizes = [rows_out, rows.len(), padded_w];
            bf16::pack_output_grad(dy_pairs, wide, len, sizes, dy);
            let input = padded[image * c_in * plane + rows.start * padded_w..].as_ptr();
            let (sum, channels) = (&mut sum, [rows_out, c_in]);
            // SAFETY: `PairProducts::of` took the shape for these products, chosen only where
            // the CPU has them (`Products::best_mixed`); `len` is a multiple of WEIGHT_PIXELS;
            // `pad_bf16`'s tail covers the reads past the band's wide output (as `pad`'s
            // does in `band`, plus the rounding up to WEIGHT_PIXELS).
            match products {
                PairProducts::Dot => unsafe {
                    super::avx512_bf16::weight_products(
                        sum, input, plane, dy_pairs, len, &shifts, channels,
                    )
                },
                #[cfg(target_os = "linux")]
                PairProducts::Tiles => unsafe {
                    super::amx::weight_products(sum, input, plane, dy_pairs, len, &shifts, channels)
                },
            }
        });
        sum
    };
    let sums = sum_bands(bands.count(shape.batch), size, accumulate);
    transpose_columns(sums, rows_out, shape)
}

/// The output gradient as the weight gradient reads it ([`f32_weight_gradient`],
/// [`bf16_weight_gradient`]). The padded forms are the input gradient's operand, for a
/// convolution whose padding keeps the size (`2·p = K − 1`): then the padded plane of
/// [`transposed`]`(shape)` is the forward's, each output row at its padded place, and a band's
/// rows are one run in it whose padding zeros fall where the wide layout has its garbage.
#[derive(Clone, Copy)]
pub(super) enum OutputGrad<'a> {
    /// `[N, C_out, H_out, W_out]` floats.
    Floats(&'a [f32]),
    /// Padded in f32 ([`super::layout::pad`]'s layout), for the f32 products.
    Padded(&'a [f32]),
    /// Padded in bfloat16 channel pairs ([`super::bf16::pad_pairs`]'s layout, `pairs` per
    /// image), for the bfloat16 products.
    #[cfg(target_arch = "x86_64")]
    Pairs { words: &'a [u32], pairs: usize },
}

/// Where a band's rows from output row `row` on start in padded plane `plane` of
/// [`OutputGrad`]'s padded forms: that row's first value, `p_h` rows and `p_w` columns in.
fn band_start(shape: Shape, plane: usize, row: usize) -> usize {
    let [padded_h, padded_w] = shape.padded_size();
    let [pad_h, pad_w] = shape.padding;
    plane * padded_h * padded_w + (row + pad_h) * padded_w + pad_w
}

#[cfg(target_arch = "x86_64")]
std::thread_local! {
    /// Each thread's buffers for [`bf16_weight_gradient`]'s bands: the output gradient in
    /// bfloat16 pairs, and in its wide layout on the way.
    static PAIR_SCRATCH: std::cell::RefCell<(Vec<u32>, Vec<MaybeUninit<u32>>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// The gradient of the bias, `db[o] = Σ_n Σ_p dY[n, o, p]`, each channel summed in f64 in an
/// order fixed by the shape ([`plane_sum`], the channels in parallel): the same bits at any
/// thread count.
///
/// # Shapes
/// - `output_grad`: `[N, C_out, pixels]` → `[C_out]`
pub fn bias_gradient(
    output_grad: &[f32],
    batch: usize,
    channels: usize,
    pixels: usize,
) -> Vec<f32> {
    let channel = |o: usize| {
        let mut total = 0f64;
        for n in 0..batch {
            plane_sum(
                &output_grad[(n * channels + o) * pixels..][..pixels],
                &mut total,
            );
        }
        total as f32
    };
    parallel::map_indices(channels, channel)
}

/// How many bands' weight gradients one task sums before the tasks' sums are added.
const BANDS_PER_SUM: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{values, worst};

    /// The bias gradient against the definition (f64, one value after another): planes shorter
    /// than, a multiple of and past a multiple of the running sums, values of both signs and
    /// of magnitudes 1e-3 to 1e3.
    #[test]
    fn the_bias_gradient_is_the_sum() {
        for (batch, channels, pixels) in [(1, 1, 7), (2, 3, 64), (3, 5, 1000)] {
            let grad: Vec<f32> = values(batch * channels * pixels, 7)
                .iter()
                .enumerate()
                .map(|(i, v)| v * 10f32.powi((i % 7) as i32 - 3))
                .collect();
            let ours = bias_gradient(&grad, batch, channels, pixels);
            for (o, &got) in ours.iter().enumerate() {
                let mut want = 0f64;
                for n in 0..batch {
                    for p in 0..pixels {
                        want += grad[(n * channels + o) * pixels + p] as f64;
                    }
                }
                let scale = grad.iter().map(|v| v.abs() as f64).sum::<f64>();
                assert!(
                    (got as f64 - want).abs() <= 1e-7 * scale,
                    "{batch}x{channels}x{pixels}, channel {o}: {got} vs {want}"
                );
            }
        }
    }

    /// Both gradients by their definitions (f64 loops) for `L = Σ y·g`:
    /// `dX[n, c, i, j] = Σ g[n, o, i + p − a, j + p − b] · W[o, c, a, b]` and
    /// `dW[o, c, a, b] = Σ g[n, o, y, x] · X_pad[n, c, y + a, x + b]`.
    fn by_definition(shape: Shape, x: &[f32], weight: &[f32], grad: &[f32]) -> [Vec<f64>; 2] {
        let [h, w] = shape.size;
        let [oh, ow] = shape.out_size();
        let [kh, kw] = shape.kernel;
        let [ph, pw] = shape.padding;
        let (n, ci, co) = (shape.batch, shape.channels_in, shape.channels_out);
        let mut dx = vec![0f64; x.len()];
        let mut dw = vec![0f64; weight.len()];
        for s in 0..n {
            for o in 0..co {
                for y in 0..oh {
                    for z in 0..ow {
                        let g = grad[((s * co + o) * oh + y) * ow + z] as f64;
                        for c in 0..ci {
                            for a in 0..kh {
                                for b in 0..kw {
                                    let (yy, zz) = (y + a, z + b);
                                    if yy < ph || zz < pw || yy - ph >= h || zz - pw >= w {
                                        continue;
                                    }
                                    let xi = ((s * ci + c) * h + yy - ph) * w + zz - pw;
                                    let wi = ((o * ci + c) * kh + a) * kw + b;
                                    dx[xi] += g * weight[wi] as f64;
                                    dw[wi] += g * x[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        [dx, dw]
    }

    /// Pseudo-random input, kernel and output gradient for `shape` (seeds `seed` to `seed + 2`).
    fn operands(shape: Shape, seed: u64) -> [Vec<f32>; 3] {
        let ([h, w], [oh, ow]) = (shape.size, shape.out_size());
        let (n, ci, co) = (shape.batch, shape.channels_in, shape.channels_out);
        [
            values(n * ci * h * w, seed),
            values(co * ci * shape.taps(), seed + 1),
            values(n * co * oh * ow, seed + 2),
        ]
    }

    /// Both gradients against [`by_definition`], by every f32 product path this CPU has.
    #[test]
    fn the_banded_gradients_are_the_gradients() {
        for (i, shape) in [
            Shape::of([2, 3, 5], [40, 50], [3, 3], [1, 1]),
            Shape::of([1, 4, 2], [9, 30], [3, 2], [0, 1]),
            Shape::of([2, 13, 11], [10, 21], [3, 3], [1, 1]),
        ]
        .into_iter()
        .enumerate()
        {
            let [x, weight, grad] = operands(shape, 30 + 3 * i as u64);
            let [dx, dw] = by_definition(shape, &x, &weight, &grad);
            assert!(input_gradient_applies(shape));
            for products in Products::all() {
                let input = worst(
                    &input_gradient_on(products, Input::Floats(&[&grad]), &weight, shape),
                    &dx,
                );
                let weights = worst(&weight_gradient_on(products, &x, &grad, shape), &dw);
                assert!(
                    input < 1e-4 && weights < 1e-3,
                    "{products:?} {shape:?}: dX {input}, dW {weights}"
                );
            }
        }
    }

    /// Each kind of bfloat16 gradients this CPU has (AMX, AVX512-BF16; the products module's
    /// tests check that none is missed) against [`by_definition`] of the input, kernel and
    /// output gradient rounded to bfloat16 (as those products read them): the BRN's shapes
    /// (32 → 32, the LSTM's 96 → 128, the first convolution's 6 → 32), one with a lone group
    /// of 16 channels each way and several bands, and odd channel counts. Shapes a kind leaves
    /// to the f32 products are skipped for it.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_bfloat16_gradients_are_the_gradients_of_rounded_operands() {
        let kinds = Products::all_mixed();
        if kinds.is_empty() {
            eprintln!(
                "no bfloat16 products on this CPU: the bfloat16 gradients are not tested here"
            );
        }
        let round = super::super::bf16::rounded;
        let shape = Shape::same_3x3;
        for (i, shape) in [
            shape(2, 32, [11, 17], 32),
            shape(1, 96, [9, 8], 128),
            shape(2, 48, [70, 30], 16),
            shape(2, 6, [13, 21], 32),
            shape(1, 7, [10, 9], 48),
            // Output channels short of a vector (the model's last layer) and past one.
            shape(2, 32, [12, 15], 3),
            shape(1, 5, [9, 11], 20),
        ]
        .into_iter()
        .enumerate()
        {
            let [x, weight, grad] = operands(shape, 60 + 3 * i as u64);
            let [dx, dw] = by_definition(shape, &round(&x), &round(&weight), &round(&grad));
            let [_, exact] = by_definition(shape, &x, &weight, &grad);
            let transposed = Shape {
                channels_in: shape.channels_out,
                channels_out: shape.channels_in,
                size: shape.out_size(),
                ..shape
            };
            for &products in &kinds {
                if products.for_shape(transposed) == products {
                    let input = worst(
                        &input_gradient_on(products, Input::Floats(&[&grad]), &weight, shape),
                        &dx,
                    );
                    // Sums of up to 9·128 products of values in [-1, 1).
                    assert!(input < 1e-4, "{products:?} {shape:?}: dX {input}");
                }
                if PairProducts::of(products, shape).is_some() {
                    let ours = weight_gradient_on(products, &x, &grad, shape);
                    // Sums of up to 2·70·30 products.
                    let weights = worst(&ours, &dw);
                    assert!(weights < 1e-3, "{products:?} {shape:?}: dW {weights}");
                    // And the rounding is there: f32 operands give other sums.
                    let apart = worst(&ours, &exact);
                    assert!(apart > 1e-3, "{products:?} {shape:?}: {apart}");
                }
            }
        }
    }
}
