//! The CPU convolution, without im2col (its gradients: [`super::conv_gradient`]): the input is
//! copied once, zero-padded, and the convolution is `K_h·K_w` matrix products per band of
//! output rows, one per kernel tap, each reading the padded input at that tap's shift in place
//! (the `gemm` crate, the bands in parallel with rayon under the `parallel` feature).
//!
//! The trick: in a padded plane of width `W_p = W + 2·p_w`, output pixel `(y, x)` reads
//! `X_p[y + a, x + b]` at tap `(a, b)`, which is flat index `q + a·W_p + b` for `q = y·W_p + x`.
//! So over the "wide" output (every row `W_p` long, the last `W_p − W_out` columns garbage)
//! tap `(a, b)` is one matrix product `Y_wide += W_ab · X_p[:, shift_ab ..]` whose right-hand
//! side is the padded input itself, rows `C_in` apart. The wide band is then copied into the
//! NCHW output without its garbage columns, applying the bias and [`After`] on the way.
//! im2col instead writes `K_h·K_w` copies of the input, and gemm packs them once more.
//!
//! Contract: stride 1, dilation 1 and one group (every BRN convolution; the caller checks,
//! see `model`'s `backend::is_plain`), symmetric zero padding up to the kernel's reach. The input
//! may come as several tensors read as if concatenated along the channels (the LSTM's
//! `cat[features, h, h_other]`: the padded copy is the concatenation), and the model's ReLU and
//! residual add ([`After`]) are applied to each band while it is in cache. Bands run in
//! parallel and each output value is one band's, so the result does not depend on the threads.

use std::borrow::Cow;

use super::elementwise::relu;
use super::gemm::gemm_products;
use super::layout::{pack, wide_len, with_scratch, Bands, Input, Output, Shape};
use super::parallel;
use super::products::{Precision, Products};
use crate::After;

/// `y = conv(cat(x), weight) + bias`, then `after`, all row-major NCHW /
/// `[C_out, C_in, K_h, K_w]`; `x` is one tensor, or several whose channels add up to `C_in`.
///
/// # Shapes
/// - `x`: `[N, C_i, H, W]` each, `Σ C_i = C_in`; `weight`: `[C_out, C_in, K_h, K_w]`,
///   `bias`: `[C_out]`
/// - output: `[N, C_out, H_out, W_out]`
pub fn conv2d(
    x: &[&[f32]],
    weight: &[f32],
    bias: Option<&[f32]>,
    shape: Shape,
    after: After<&[f32]>,
    precision: Precision,
) -> Vec<f32> {
    conv2d_on(Products::best(precision), x, weight, bias, shape, after)
}

/// [`conv2d`] by the given products.
fn conv2d_on(
    products: Products,
    x: &[&[f32]],
    weight: &[f32],
    bias: Option<&[f32]>,
    shape: Shape,
    after: After<&[f32]>,
) -> Vec<f32> {
    // taps[a·K_w + b][o][c] = weight[o, c, a, b]
    let taps = taps_of(shape, |o, c, tap| {
        weight[(o * shape.channels_in + c) * shape.taps() + tap]
    });
    convolve(products, Input::Floats(x), &taps, bias, shape, after)
}

/// The kernel as one `[C_out, C_in]` matrix per tap, `[K_h·K_w][C_out][C_in]`, from
/// `value(o, c, tap)`.
pub(super) fn taps_of(shape: Shape, value: impl Fn(usize, usize, usize) -> f32) -> Vec<f32> {
    let (c_in, c_out) = (shape.channels_in, shape.channels_out);
    let mut taps = Vec::with_capacity(shape.taps() * c_out * c_in);
    for tap in 0..shape.taps() {
        for o in 0..c_out {
            taps.extend((0..c_in).map(|c| value(o, c, tap)));
        }
    }
    taps
}

/// [`conv2d`] with the kernel given as [`taps_of`] lays it out.
pub(super) fn convolve(
    products: Products,
    x: Input,
    taps: &[f32],
    bias: Option<&[f32]>,
    shape: Shape,
    after: After<&[f32]>,
) -> Vec<f32> {
    let [out_h, out_w] = shape.out_size();
    let len = shape.batch * shape.channels_out * out_h * out_w;
    // What each kind of products reads, made once per convolution (the padded input in f32
    // for the f32 products; the bfloat16 ones read their own).
    let products = products.for_shape(shape);
    #[cfg(any(
        target_arch = "x86_64",
        any(test, all(target_arch = "wasm32", target_feature = "simd128"))
    ))]
    let (c_in, c_out, shifts) = (shape.channels_in, shape.channels_out, shape.shifts());
    let padded: Cow<[f32]>;
    #[cfg(any(
        target_arch = "x86_64",
        any(test, all(target_arch = "wasm32", target_feature = "simd128"))
    ))]
    let packed: Vec<f32>;
    #[cfg(target_arch = "x86_64")]
    let pairs: (Vec<u32>, Cow<[u32]>);
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    let tiles: (Vec<u16>, Vec<f32>, Cow<[u32]>);
    let kernel = match products {
        Products::Gemm => {
            padded = x.padded(shape);
            Kernel::Taps {
                taps,
                padded: &padded,
            }
        }
        #[cfg(target_arch = "x86_64")]
        Products::Avx512 => {
            (padded, packed) = (
                x.padded(shape),
                pack(taps, shape.taps(), [c_out, c_in], super::avx512::CHANNELS),
            );
            // `Products::Avx512` is chosen only where the CPU has AVX-512F.
            Kernel::packed(&packed, &padded, &shifts, super::avx512::products)
        }
        #[cfg(target_arch = "x86_64")]
        Products::Avx2 => {
            (padded, packed) = (
                x.padded(shape),
                pack(taps, shape.taps(), [c_out, c_in], super::narrow::CHANNELS),
            );
            // `Products::Avx2` is chosen only where the CPU has AVX2 and FMA.
            Kernel::packed(&packed, &padded, &shifts, super::narrow::products_avx2)
        }
        #[cfg(any(test, all(target_arch = "wasm32", target_feature = "simd128")))]
        Products::Quads => {
            (padded, packed) = (
                x.padded(shape),
                pack(taps, shape.taps(), [c_out, c_in], super::narrow::CHANNELS),
            );
            let quads = super::narrow::products::<super::lanes::Quad>;
            Kernel::packed(&packed, &padded, &shifts, quads)
        }
        #[cfg(target_arch = "x86_64")]
        Products::Avx512Bf16 => {
            use super::avx512_bf16 as dot;
            pairs = (
                dot::pack(taps, shape.taps(), c_out, c_in),
                x.pairs(|x| super::bf16::pad_pairs(x, shape, dot::pairs(c_in))),
            );
            Kernel::Pairs {
                packed: &pairs.0,
                input: &pairs.1,
                shifts: &shifts,
            }
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        Products::Amx => {
            use super::amx;
            tiles = (
                amx::pack(taps, shape.taps(), c_out, c_in),
                amx::bias_tiles(bias, c_out),
                x.pairs(|x| super::bf16::pad_pairs(x, shape, amx::pairs(c_in))),
            );
            Kernel::Tiles {
                packed: &tiles.0,
                bias: &tiles.1,
                input: &tiles.2,
                shifts: &shifts,
            }
        }
    };
    // Not zeroed: every band writes each of its values.
    let mut output: Vec<f32> = Vec::with_capacity(len);
    let bands = Bands::of(shape);
    let out = Output(output.as_mut_ptr());
    let run = |task: usize| {
        let (image, rows) = bands.band(task);
        let wide = shape.channels_out * wide_len(rows.len(), shape.padded_size()[1]);
        with_scratch(wide, |wide| {
            // SAFETY: `band` writes these rows of every output channel of `image` only, and
            // the tasks cover disjoint (image, rows) pairs; `output` outlives them.
            unsafe { band(kernel, bias, shape, image, rows, out, after, wide) }
        });
    };
    parallel::for_each_index(bands.count(shape.batch), run);
    // SAFETY: the bands have written all `len` values (see above).
    unsafe { output.set_len(len) };
    output
}

/// The kernel (and what else the products read) as a band's products read it.
#[derive(Clone, Copy)]
enum Kernel<'a> {
    /// [`taps_of`]'s layout and [`pad`]'s input, for gemm.
    Taps { taps: &'a [f32], padded: &'a [f32] },
    /// [`pack`]'s layout (in the products' block), [`pad`]'s input and [`Shape::shifts`], for
    /// f32 products with that contract: [`super::avx512::products`],
    /// [`super::narrow::products_avx2`], or [`super::narrow::products`] on four-float vectors.
    #[cfg(any(
        target_arch = "x86_64",
        any(test, all(target_arch = "wasm32", target_feature = "simd128"))
    ))]
    Packed {
        packed: &'a [f32],
        padded: &'a [f32],
        shifts: &'a [usize],
        products: PackedProducts,
    },
    /// [`super::avx512_bf16::pack`]'s kernel, the input in bfloat16 channel pairs
    /// ([`super::bf16::pad_pairs`]) and [`Shape::shifts`].
    #[cfg(target_arch = "x86_64")]
    Pairs {
        packed: &'a [u32],
        input: &'a [u32],
        shifts: &'a [usize],
    },
    /// [`super::amx`]'s kernel, bias and input, and [`Shape::shifts`].
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    Tiles {
        packed: &'a [u16],
        bias: &'a [f32],
        input: &'a [u32],
        shifts: &'a [usize],
    },
}

/// A band's f32 products over [`pack`]'s layout, with [`super::avx512::products`]'s contract.
#[cfg(any(
    target_arch = "x86_64",
    any(test, all(target_arch = "wasm32", target_feature = "simd128"))
))]
type PackedProducts =
    unsafe fn(*mut f32, usize, *const f32, usize, &[usize], &[f32], [usize; 2], Option<&[f32]>);

#[cfg(any(
    target_arch = "x86_64",
    any(test, all(target_arch = "wasm32", target_feature = "simd128"))
))]
impl<'a> Kernel<'a> {
    /// [`Kernel::Packed`] for `products`, which the caller has checked this CPU runs.
    fn packed(
        packed: &'a [f32],
        padded: &'a [f32],
        shifts: &'a [usize],
        products: PackedProducts,
    ) -> Self {
        Kernel::Packed {
            packed,
            padded,
            shifts,
            products,
        }
    }
}

/// One band: output rows `rows` of image `image`, every output channel, as `K_h·K_w` products
/// into `wide` (`C_out x rows·W_p`), then copied into the output with `after`.
///
/// # Safety
/// `out` points to the whole `[N, C_out, H_out, W_out]` output; no other band writes these
/// rows of this image; `kernel` is what [`convolve`] made for this shape.
#[allow(clippy::too_many_arguments)]
unsafe fn band(
    kernel: Kernel,
    bias: Option<&[f32]>,
    shape: Shape,
    image: usize,
    rows: std::ops::Range<usize>,
    out: Output,
    after: After<&[f32]>,
    wide: &mut [f32],
) {
    let [out_h, out_w] = shape.out_size();
    let [padded_h, padded_w] = shape.padded_size();
    let plane = padded_h * padded_w;
    let (c_in, c_out) = (shape.channels_in, shape.channels_out);
    let wide_len = wide_len(rows.len(), padded_w);
    // wide[o, q] (+)= Σ_c taps[a, b][o, c] · input[c, (rows.start + a)·W_p + b + q]: the
    // pixels are the products' rows (contiguous in both), the channels their columns. The
    // input from the band's first padded row of the image's first plane (of `planes` each).
    let first = |planes: usize| image * planes * plane + rows.start * padded_w;
    match kernel {
        // SAFETY: `band`'s promise (the products read what `pad` leaves, see `gemm_products`).
        Kernel::Taps { taps, padded } => unsafe {
            gemm_products(wide, wide_len, &padded[first(c_in)..], taps, bias, shape)
        },
        #[cfg(any(
            target_arch = "x86_64",
            any(test, all(target_arch = "wasm32", target_feature = "simd128"))
        ))]
        Kernel::Packed {
            packed,
            padded,
            shifts,
            products,
        } => {
            // SAFETY: `Kernel::packed`'s promise (the CPU has what `products` needs); the
            // reads end where the gemm products' do (see `gemm_products`); `wide` holds
            // C_out·wide_len values, wide_len a multiple of ROW_MULTIPLE (two vectors of 8 or
            // one of 16).
            unsafe {
                products(
                    wide.as_mut_ptr(),
                    wide_len,
                    padded[first(c_in)..].as_ptr(),
                    plane,
                    shifts,
                    packed,
                    [c_out, c_in],
                    bias,
                )
            }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Pairs {
            packed,
            input,
            shifts,
        } => {
            // SAFETY: `Products::Avx512Bf16` is chosen only where `avx512_bf16::available()`;
            // the words read end where the gemm products' floats do (see `gemm_products`:
            // `pad_pairs` keeps `pad`'s tail, and a last odd channel's partner is zero);
            // `wide` holds C_out·wide_len values.
            unsafe {
                super::avx512_bf16::products(
                    wide.as_mut_ptr(),
                    wide_len,
                    input[first(super::avx512_bf16::pairs(c_in))..].as_ptr(),
                    plane,
                    shifts,
                    packed,
                    [c_out, c_in],
                    bias,
                )
            }
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        Kernel::Tiles {
            packed,
            bias,
            input,
            shifts,
        } => {
            // SAFETY: `Products::Amx` is chosen only where `amx::available()` and, through
            // `for_shape`, `amx::applies`; the words read end where the gemm products' floats
            // do (see `gemm_products`: `pad_pairs` keeps `pad`'s tail, and pairs past the
            // last channel are zeros within the image); `wide` holds C_out·wide_len values.
            unsafe {
                super::amx::products(
                    wide.as_mut_ptr(),
                    wide_len,
                    input[first(super::amx::pairs(c_in))..].as_ptr(),
                    plane,
                    shifts,
                    packed,
                    [c_out, c_in],
                    bias,
                )
            }
        }
    }

    // The band into the NCHW output without the garbage columns, `after` on the way.
    let out_plane = out_h * out_w;
    for o in 0..c_out {
        for (i, y) in rows.clone().enumerate() {
            let first = (image * c_out + o) * out_plane + y * out_w;
            let values = &wide[o * wide_len + i * padded_w..][..out_w];
            let target = std::slice::from_raw_parts_mut(out.0.add(first), out_w);
            match after {
                After::Nothing => target.copy_from_slice(values),
                After::Relu => {
                    for (t, v) in target.iter_mut().zip(values) {
                        *t = relu(*v);
                    }
                }
                After::ReluAdd(shortcut) => {
                    let shortcut = &shortcut[first..][..out_w];
                    for ((t, v), s) in target.iter_mut().zip(values).zip(shortcut) {
                        *t = relu(relu(*v) + s);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values;

    /// The convolution by its definition, in f64.
    fn by_definition(x: &[f32], weight: &[f32], bias: Option<&[f32]>, s: Shape) -> Vec<f32> {
        let [h, w] = s.size;
        let [oh, ow] = s.out_size();
        let [kh, kw] = s.kernel;
        let mut out = vec![0f32; s.batch * s.channels_out * oh * ow];
        for n in 0..s.batch {
            for o in 0..s.channels_out {
                for y in 0..oh {
                    for z in 0..ow {
                        let mut sum = bias.map_or(0.0, |b| b[o] as f64);
                        for c in 0..s.channels_in {
                            for a in 0..kh {
                                for b in 0..kw {
                                    let (yy, zz) = (y + a, z + b);
                                    if yy < s.padding[0] || zz < s.padding[1] {
                                        continue;
                                    }
                                    let (yy, zz) = (yy - s.padding[0], zz - s.padding[1]);
                                    if yy >= h || zz >= w {
                                        continue;
                                    }
                                    sum += weight[((o * s.channels_in + c) * kh + a) * kw + b]
                                        as f64
                                        * x[((n * s.channels_in + c) * h + yy) * w + zz] as f64;
                                }
                            }
                        }
                        out[((n * s.channels_out + o) * oh + y) * ow + z] = sum as f32;
                    }
                }
            }
        }
        out
    }

    /// Each kind of bfloat16 products this CPU has (AMX, AVX512-BF16; the products module's
    /// tests check that none is missed) against the definition (f64 loops) of the convolution
    /// of the input and kernel rounded to bfloat16 (the bias is not): two groups of 16 output
    /// channels and one alone, input channels in a whole chunk of 32 and a partial one, an odd
    /// number of 16-pixel columns, several bands; the input in two parts; the BRN's LSTM shape
    /// (96 → 128); and for the dot products, which take every shape, odd and small channel
    /// counts (the input gradient of the first convolution: 32 → 6, and 3 → 5).
    #[test]
    fn the_bfloat16_products_are_the_convolution_of_rounded_operands() {
        let kinds = Products::all_mixed();
        if kinds.is_empty() {
            eprintln!("no bfloat16 products on this CPU: not tested here");
        }
        let round = super::super::bf16::rounded;
        let shape = |batch, channels_in, size, channels_out| {
            Shape::of([batch, channels_in, channels_out], size, [3, 3], [1, 1])
        };
        for (i, shape) in [
            shape(2, 40, [37, 29], 48),
            shape(1, 32, [8, 13], 32),
            shape(2, 96, [12, 12], 128),
            shape(1, 32, [20, 17], 6),
            shape(2, 3, [9, 40], 5),
        ]
        .into_iter()
        .enumerate()
        {
            let [h, w] = shape.size;
            let x = values(shape.batch * shape.channels_in * h * w, 40 + i as u64);
            let weight = values(
                shape.channels_out * shape.channels_in * shape.taps(),
                50 + i as u64,
            );
            let bias = values(shape.channels_out, 60 + i as u64);
            let reference = by_definition(&round(&x), &round(&weight), Some(&bias), shape);
            let exact = by_definition(&x, &weight, Some(&bias), shape);
            let plane = h * w;
            let split = (shape.channels_in / 2) * plane;
            let (first, second): (Vec<f32>, Vec<f32>) = if shape.batch == 1 {
                (x[..split].to_vec(), x[split..].to_vec())
            } else {
                (x.clone(), Vec::new())
            };
            let parts: Vec<&[f32]> = if shape.batch == 1 {
                vec![&first, &second]
            } else {
                vec![&first]
            };
            for &products in &kinds {
                if products.for_shape(shape) != products {
                    continue; // a shape these products leave to the f32 ones
                }
                let ours = conv2d_on(
                    products,
                    &parts,
                    &weight,
                    Some(&bias),
                    shape,
                    After::Nothing,
                );
                let worst = ours
                    .iter()
                    .zip(&reference)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(worst < 1e-4, "{products:?} {shape:?}: {worst}");
                // And the rounding matters: the f32 convolution differs by more.
                let apart = ours
                    .iter()
                    .zip(&exact)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(apart > 1e-3, "{products:?} {shape:?}: {apart}");
            }
        }
    }

    /// Against the definition (f64 loops): several bands per image (the last one short),
    /// images narrower than the kernel's reach, no padding, a non-square kernel, no bias; the
    /// input whole and in two parts; each epilogue.
    #[test]
    fn the_banded_convolution_is_the_convolution() {
        for (i, shape) in [
            Shape::of([2, 3, 5], [40, 50], [3, 3], [1, 1]),
            Shape::of([1, 2, 3], [7, 2], [3, 3], [1, 1]),
            Shape::of([2, 4, 2], [9, 30], [3, 2], [0, 0]),
            Shape::of([1, 6, 4], [300, 5], [3, 3], [2, 1]),
            Shape::of([2, 13, 11], [10, 21], [3, 3], [1, 1]),
            // More input channels than one run of a micro-kernel's tile sums (16).
            Shape::of([1, 37, 9], [6, 11], [3, 3], [1, 1]),
        ]
        .into_iter()
        .enumerate()
        {
            let [h, w] = shape.size;
            let x = values(shape.batch * shape.channels_in * h * w, i as u64);
            let weight = values(
                shape.channels_out * shape.channels_in * shape.kernel[0] * shape.kernel[1],
                10 + i as u64,
            );
            let bias = values(shape.channels_out, 20 + i as u64);
            let bias = (i != 2).then_some(bias.as_slice());
            let reference = by_definition(&x, &weight, bias, shape);
            let check = |ours: Vec<f32>, reference: Vec<f32>, what: &str| {
                assert_eq!(ours.len(), reference.len());
                let worst = ours
                    .iter()
                    .zip(&reference)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(worst < 1e-4, "{shape:?} {what}: {worst}");
            };
            for products in Products::all() {
                let check = |ours, reference, what: &str| {
                    check(ours, reference, &format!("{products:?}, {what}"))
                };
                let conv2d =
                    |x: &[&[f32]], after| conv2d_on(products, x, &weight, bias, shape, after);
                let ours = conv2d(&[&x], After::Nothing);
                check(ours, reference.clone(), "alone");

                // The input in two parts split along the channels (as if concatenated), and the
                // epilogues against the reference with ReLU and the shortcut applied after it.
                let plane = h * w;
                let part = |channels: std::ops::Range<usize>| -> Vec<f32> {
                    (0..shape.batch)
                        .flat_map(|n| {
                            let image = &x[n * shape.channels_in * plane..];
                            image[channels.start * plane..channels.end * plane].to_vec()
                        })
                        .collect()
                };
                let split = shape.channels_in / 2;
                let (first, second) = (part(0..split), part(split..shape.channels_in));
                let parts: [&[f32]; 2] = [&first, &second];
                let relu = conv2d(&parts, After::Relu);
                check(
                    relu,
                    reference.iter().map(|v| v.max(0.0)).collect(),
                    "parts, relu",
                );
                let shortcut = values(reference.len(), 30 + i as u64);
                let residual = conv2d(&parts, After::ReluAdd(&shortcut));
                check(
                    residual,
                    reference
                        .iter()
                        .zip(&shortcut)
                        .map(|(v, s)| (v.max(0.0) + s).max(0.0))
                        .collect(),
                    "parts, relu + shortcut",
                );
            }
        }
    }
}
