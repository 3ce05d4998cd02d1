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
    #[cfg(any(test, all(target_arch = "wasm32", target_feature = "simd128")))]
    let planes: Option<Vec<&[f32]>>;
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
            let input = Source::Padded(&padded);
            Kernel::packed(&packed, input, &shifts, super::avx512::products)
        }
        #[cfg(target_arch = "x86_64")]
        Products::Avx2 => {
            (padded, packed) = (
                x.padded(shape),
                pack(taps, shape.taps(), [c_out, c_in], super::narrow::CHANNELS),
            );
            // `Products::Avx2` is chosen only where the CPU has AVX2 and FMA.
            let input = Source::Padded(&padded);
            Kernel::packed(&packed, input, &shifts, super::narrow::products_avx2)
        }
        #[cfg(any(test, all(target_arch = "wasm32", target_feature = "simd128")))]
        Products::Quads => {
            // The page's products: each band pads its own window of a float input (a whole
            // padded copy of a large input is out of every cache by the time the bands read
            // it: in V8, 512x512 took 15 % longer per pixel than 214x214, `narrow::STRIP`).
            planes = x.planes(shape);
            let input = match planes.as_deref() {
                Some(planes) => Source::Planes(planes),
                None => {
                    padded = x.padded(shape);
                    Source::Padded(&padded)
                }
            };
            packed = pack(taps, shape.taps(), [c_out, c_in], super::narrow::CHANNELS);
            let quads = super::narrow::products::<super::lanes::Quad>;
            Kernel::packed(&packed, input, &shifts, quads)
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
        let wide_len = wide_len(rows.len(), shape.padded_size()[1]);
        let wide = shape.channels_out * wide_len;
        let window = kernel
            .window(wide_len)
            .map_or(0, |reach| shape.channels_in * reach);
        with_scratch(wide + window, |scratch| {
            let (wide, window) = scratch.split_at_mut(wide);
            // SAFETY: `band` writes these rows of every output channel of `image` only, and
            // the tasks cover disjoint (image, rows) pairs; `output` outlives them.
            unsafe { band(kernel, bias, shape, image, rows, out, after, wide, window) }
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
    /// [`pack`]'s layout (in the products' block), the input and [`Shape::shifts`], for f32
    /// products with that contract: [`super::avx512::products`],
    /// [`super::narrow::products_avx2`], or [`super::narrow::products`] on four-float vectors.
    #[cfg(any(
        target_arch = "x86_64",
        any(test, all(target_arch = "wasm32", target_feature = "simd128"))
    ))]
    Packed {
        packed: &'a [f32],
        input: Source<'a>,
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

/// Where [`Kernel::Packed`]'s products read the input.
#[cfg(any(
    target_arch = "x86_64",
    any(test, all(target_arch = "wasm32", target_feature = "simd128"))
))]
#[derive(Clone, Copy)]
enum Source<'a> {
    /// [`pad`]'s whole padded input.
    Padded(&'a [f32]),
    /// The input's planes, of which each band pads its own window
    /// ([`super::layout::pad_window`]).
    #[cfg(any(test, all(target_arch = "wasm32", target_feature = "simd128")))]
    Planes(&'a [&'a [f32]]),
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
        input: Source<'a>,
        shifts: &'a [usize],
        products: PackedProducts,
    ) -> Self {
        Kernel::Packed {
            packed,
            input,
            shifts,
            products,
        }
    }
}

impl Kernel<'_> {
    /// Where each band pads its own window of the input: the values per input plane that a
    /// band of `wide_len` wide values reads (its reach past its first padded row).
    #[cfg(any(test, all(target_arch = "wasm32", target_feature = "simd128")))]
    fn window(&self, wide_len: usize) -> Option<usize> {
        match self {
            Kernel::Packed {
                input: Source::Planes(_),
                shifts,
                ..
            } => Some(wide_len + shifts.last().copied().unwrap_or(0)),
            _ => None,
        }
    }

    /// No band pads its own window here: only the page's products do.
    #[cfg(not(any(test, all(target_arch = "wasm32", target_feature = "simd128"))))]
    fn window(&self, _wide_len: usize) -> Option<usize> {
        None
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
    // Empty where no band pads its own window (`Kernel::window`): all but the page's products.
    #[cfg_attr(
        not(any(test, all(target_arch = "wasm32", target_feature = "simd128"))),
        allow(unused_variables)
    )]
    window: &mut [f32],
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
            input,
            shifts,
            products,
        } => {
            // The whole padded input from the band's first row, or the band's own padded
            // window (`convolve` sized `window` for it).
            let (input, plane) = match input {
                Source::Padded(padded) => (padded[first(c_in)..].as_ptr(), plane),
                #[cfg(any(test, all(target_arch = "wasm32", target_feature = "simd128")))]
                Source::Planes(planes) => {
                    let reach = window.len() / c_in.max(1);
                    let planes = &planes[image * c_in..][..c_in];
                    super::layout::pad_window(planes, shape, rows.start, reach, window);
                    (window.as_ptr(), reach)
                }
            };
            // SAFETY: `Kernel::packed`'s promise (the CPU has what `products` needs); the
            // reads end where the gemm products' do (see `gemm_products`; a window reaches
            // `wide_len` past its last shift in each plane); `wide` holds C_out·wide_len
            // values, wide_len a multiple of ROW_MULTIPLE (two vectors of 8 or one of 16).
            unsafe {
                products(
                    wide.as_mut_ptr(),
                    wide_len,
                    input,
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
mod tests;
