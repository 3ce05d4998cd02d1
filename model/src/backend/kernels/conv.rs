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
//! see `crate::backend::is_plain`), symmetric zero padding up to the kernel's reach. The input
//! may come as several tensors read as if concatenated along the channels (the LSTM's
//! `cat[features, h, h_other]`: the padded copy is the concatenation), and the model's ReLU and
//! residual add ([`After`]) are applied to each band while it is in cache. Bands run in
//! parallel and each output value is one band's, so the result does not depend on the threads.

use std::mem::MaybeUninit;

use super::parallel;
use crate::backend::After;

/// About how many output pixels one band covers (whole rows): its wide output, `C_out x
/// rows·W_p` floats, and the input rows it reads stay in a core's cache.
const PIXELS_PER_BAND: usize = 768;

/// A band's wide output is rounded up to a multiple of this many pixels (garbage too): gemm
/// copies ("packs") a left-hand side whose rows are not a multiple of its SIMD width (16
/// floats with AVX-512) before every product, and the pixels are those rows.
pub(super) const ROW_MULTIPLE: usize = 16;

/// The pixels of a band's wide output: `rows·W_p`, rounded up to [`ROW_MULTIPLE`].
pub(super) fn wide_len(rows: usize, padded_w: usize) -> usize {
    (rows * padded_w).next_multiple_of(ROW_MULTIPLE)
}

/// The sizes of one convolution.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Batch size N.
    pub batch: usize,
    /// Input channels.
    pub channels_in: usize,
    /// Input height and width.
    pub size: [usize; 2],
    /// Output channels.
    pub channels_out: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Zero padding, top/bottom and left/right.
    pub padding: [usize; 2],
}

impl Shape {
    /// Output height and width.
    pub fn out_size(&self) -> [usize; 2] {
        [
            self.size[0] + 2 * self.padding[0] + 1 - self.kernel[0],
            self.size[1] + 2 * self.padding[1] + 1 - self.kernel[1],
        ]
    }

    /// Height and width of a zero-padded input plane.
    pub(super) fn padded_size(&self) -> [usize; 2] {
        [
            self.size[0] + 2 * self.padding[0],
            self.size[1] + 2 * self.padding[1],
        ]
    }

    /// Kernel taps, `K_h·K_w`.
    pub(super) fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// Where each tap reads in a padded plane, relative to the output pixel's wide index:
    /// `a·W_p + b` for tap `(a, b)`, in tap order.
    pub(super) fn shifts(&self) -> Vec<usize> {
        let padded_w = self.padded_size()[1];
        (0..self.kernel[0])
            .flat_map(|a| (0..self.kernel[1]).map(move |b| a * padded_w + b))
            .collect()
    }
}

/// A raw pointer that the bands share; each band writes its own part only.
#[derive(Clone, Copy)]
pub(super) struct Output(*mut f32);
// SAFETY: the bands write disjoint parts of the output (see `band`).
unsafe impl Send for Output {}
unsafe impl Sync for Output {}

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
) -> Vec<f32> {
    conv2d_on(Products::best(), x, weight, bias, shape, after)
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
    convolve(products, x, &taps, bias, shape, after)
}

/// Whether the convolutions may round their operands to bfloat16 ([`set_mixed_precision`]).
static MIXED_PRECISION: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Lets the convolutions and their input gradients round the input and the kernel to
/// bfloat16 (every sum stays f32) where the CPU has AMX, for this whole process, about ten
/// times as fast there as the f32 products (elsewhere it changes nothing). For training: the
/// trainer sets it when its configuration asks and clears it around validation; inference,
/// the page and the parity tests never set it. Returns whether the CPU takes it.
pub fn set_mixed_precision(on: bool) -> bool {
    MIXED_PRECISION.store(on, std::sync::atomic::Ordering::Relaxed);
    on && Products::best() != Products::best_f32()
}

/// `f()` with the convolutions in f32 whatever [`set_mixed_precision`] says (for validation
/// within a mixed-precision training run), the setting restored after.
pub fn in_full_precision<R>(f: impl FnOnce() -> R) -> R {
    let mixed = MIXED_PRECISION.swap(false, std::sync::atomic::Ordering::Relaxed);
    let result = f();
    MIXED_PRECISION.store(mixed, std::sync::atomic::Ordering::Relaxed);
    result
}

/// Which code computes the convolution's matrix products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Products {
    /// The `gemm` crate, one product per tap (any CPU, the page's wasm).
    Gemm,
    /// The AVX-512 micro-kernels ([`super::avx512`]).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// The AMX tile products in bfloat16 ([`super::amx`]), with the f32 products for the
    /// shapes they do not take.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    Amx,
}

impl Products {
    /// The fastest this CPU runs at the precision asked ([`set_mixed_precision`]).
    pub(super) fn best() -> Self {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if MIXED_PRECISION.load(std::sync::atomic::Ordering::Relaxed) && super::amx::available() {
            return Self::Amx;
        }
        Self::best_f32()
    }

    /// The fastest f32 products this CPU runs.
    fn best_f32() -> Self {
        #[cfg(target_arch = "x86_64")]
        if super::avx512::available() {
            return Self::Avx512;
        }
        Self::Gemm
    }

    /// These products, or the best f32 ones where they do not take `shape`.
    #[cfg_attr(
        not(all(target_arch = "x86_64", target_os = "linux")),
        allow(unused_variables)
    )]
    fn for_shape(self, shape: Shape) -> Self {
        match self {
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Self::Amx if !super::amx::applies(shape.channels_out, shape.channels_in) => {
                Self::best_f32()
            }
            products => products,
        }
    }

    /// Every f32 one this CPU runs (the tests check each).
    #[cfg(test)]
    pub(super) fn all() -> Vec<Self> {
        let mut all = vec![Self::Gemm];
        if Self::best_f32() != Self::Gemm {
            all.push(Self::best_f32());
        }
        all
    }
}

/// The kernel as one `[C_out, C_in]` matrix per tap, `[K_h·K_w][C_out][C_in]`, from
/// `value(o, c, tap)`.
pub(super) fn taps_of(shape: Shape, value: impl Fn(usize, usize, usize) -> f32) -> Vec<f32> {
    let (c_in, c_out) = (shape.channels_in, shape.channels_out);
    (0..shape.taps())
        .flat_map(|tap| (0..c_out).flat_map(move |o| (0..c_in).map(move |c| (o, c, tap))))
        .map(|(o, c, tap)| value(o, c, tap))
        .collect()
}

/// [`conv2d`] with the kernel given as [`taps_of`] lays it out.
pub(super) fn convolve(
    products: Products,
    x: &[&[f32]],
    taps: &[f32],
    bias: Option<&[f32]>,
    shape: Shape,
    after: After<&[f32]>,
) -> Vec<f32> {
    let [out_h, out_w] = shape.out_size();
    let len = shape.batch * shape.channels_out * out_h * out_w;
    // What each kind of products reads, made once per convolution (the padded input for all
    // but the AMX products, which read their own).
    let products = products.for_shape(shape);
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    let padded = if products == Products::Amx {
        Vec::new()
    } else {
        pad(x, shape)
    };
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    let padded = pad(x, shape);
    #[cfg(target_arch = "x86_64")]
    let (c_in, c_out, shifts) = (shape.channels_in, shape.channels_out, shape.shifts());
    #[cfg(target_arch = "x86_64")]
    let packed: Vec<f32>;
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    let tiles: (Vec<u16>, Vec<f32>, Vec<u32>);
    let kernel = match products {
        Products::Gemm => Kernel::Taps(taps),
        #[cfg(target_arch = "x86_64")]
        Products::Avx512 => {
            packed = super::avx512::pack(taps, shape.taps(), c_out, c_in);
            Kernel::Packed {
                packed: &packed,
                shifts: &shifts,
            }
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        Products::Amx => {
            tiles = (
                super::amx::pack(taps, shape.taps(), c_out, c_in),
                super::amx::bias_tiles(bias, c_out),
                super::amx::pad_pairs(x, shape),
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
            unsafe { band(&padded, kernel, bias, shape, image, rows, out, after, wide) }
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
    /// [`taps_of`]'s layout, for gemm.
    Taps(&'a [f32]),
    /// [`super::avx512::pack`]'s layout, and [`Shape::shifts`].
    #[cfg(target_arch = "x86_64")]
    Packed {
        packed: &'a [f32],
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

/// One band: output rows `rows` of image `image`, every output channel, as `K_h·K_w` products
/// into `wide` (`C_out x rows·W_p`), then copied into the output with `after`.
///
/// # Safety
/// `out` points to the whole `[N, C_out, H_out, W_out]` output; no other band writes these
/// rows of this image; `padded` is [`pad`]'s result for this shape.
#[allow(clippy::too_many_arguments)]
unsafe fn band(
    padded: &[f32],
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
    // pixels are the products' rows (contiguous in both), the channels their columns.
    // (Empty for the AMX products, which read their own input.)
    let input = || &padded[image * c_in * plane + rows.start * padded_w..];
    match kernel {
        // SAFETY: `band`'s promise (the products read what `pad` leaves, see `gemm_products`).
        Kernel::Taps(taps) => unsafe { gemm_products(wide, wide_len, input(), taps, bias, shape) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Packed { packed, shifts } => {
            // SAFETY: `Products::Avx512` is chosen only where the CPU has AVX-512F; the reads
            // end where the gemm products' do (see `gemm_products`); `wide` holds
            // C_out·wide_len values.
            unsafe {
                super::avx512::products(
                    wide.as_mut_ptr(),
                    wide_len,
                    input().as_ptr(),
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
            let first = image * super::amx::pairs(c_in) * plane + rows.start * padded_w;
            // SAFETY: `Products::Amx` is chosen only where `amx::available()` and, through
            // `for_shape`, `amx::applies`; the words read end where the gemm products' floats
            // do (see `gemm_products`: `pack_input` keeps `pad`'s tail, and pairs past the
            // last channel are zeros within the image); `wide` holds C_out·wide_len values.
            unsafe {
                super::amx::products(
                    wide.as_mut_ptr(),
                    wide_len,
                    input[first..].as_ptr(),
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
                        *t = v.max(0.0);
                    }
                }
                After::ReluAdd(shortcut) => {
                    let shortcut = &shortcut[first..][..out_w];
                    for ((t, v), s) in target.iter_mut().zip(values).zip(shortcut) {
                        *t = (v.max(0.0) + s).max(0.0);
                    }
                }
            }
        }
    }
}

/// A band's products by gemm: `wide = bias + Σ_taps W_ab · input[:, shift_ab ..]`, one
/// product per tap, `input` the band's first padded row of channel 0.
///
/// # Safety
/// `input` is [`pad`]'s buffer from the band's first row of its image's channel 0, `wide`
/// holds `C_out·wide_len` values and `wide_len` is [`wide_len`]'s for the band.
unsafe fn gemm_products(
    wide: &mut [f32],
    wide_len: usize,
    input: &[f32],
    taps: &[f32],
    bias: Option<&[f32]>,
    shape: Shape,
) {
    let [padded_h, padded_w] = shape.padded_size();
    let plane = padded_h * padded_w;
    let (c_in, c_out) = (shape.channels_in, shape.channels_out);
    let mut read = false;
    if let Some(bias) = bias {
        for (o, &value) in bias.iter().enumerate() {
            wide[o * wide_len..][..wide_len].fill(value);
        }
        read = true;
    }
    for (tap, &shift) in shape.shifts().iter().enumerate() {
        let tap = &taps[tap * c_out * c_in..][..c_out * c_in];
        let shifted = &input[shift..];
        // SAFETY: the last value read, channel C_in − 1 at q = wide_len − 1 for tap (a, b),
        // is at (C_in − 1)·plane + (rows.end − 1 + a)·W_p + b + W_p − 1 + ROW_MULTIPLE − 1 <
        // C_in·plane + K_w + ROW_MULTIPLE from the image's first padded value
        // (rows.end − 1 + a < H_p), which `pad` leaves in the buffer; `wide` holds
        // C_out·wide_len values; `tap` C_out·C_in.
        product(
            [wide_len, c_out, c_in],
            (wide.as_mut_ptr(), wide_len),
            read,
            (shifted.as_ptr(), plane),
            (tap.as_ptr(), c_in),
        );
        read = true;
    }
}

/// `dst (+)= lhs · rhs` on this thread (gemm), `[m, n, k]` the sizes: `dst` `m x n`, `lhs`
/// `m x k`, `rhs` `k x n`, each given as its first value and the distance between its columns
/// (its rows are adjacent); `read` adds to what `dst` holds, else overwrites it.
///
/// # Safety
/// Each pointer reaches every value of its matrix so laid out.
pub(super) unsafe fn product(
    [m, n, k]: [usize; 3],
    (dst, dst_columns): (*mut f32, usize),
    read: bool,
    (lhs, lhs_columns): (*const f32, usize),
    (rhs, rhs_columns): (*const f32, usize),
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        dst_columns as isize,
        1,
        read,
        lhs,
        lhs_columns as isize,
        1,
        rhs,
        rhs_columns as isize,
        1,
        1.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// The input zero-padded, plane after plane (`[N, C_in, H + 2·p_h, W + 2·p_w]`, channel `c`
/// counted across the parts of `x`), then `K_w + ROW_MULTIPLE` zeros, so that a band's product
/// may read a shifted window's last, garbage, values past the last plane.
pub(super) fn pad(x: &[&[f32]], shape: Shape) -> Vec<f32> {
    let sources = source_planes(x, shape);
    let width = shape.size[1];
    let tail = shape.kernel[1] + ROW_MULTIPLE;
    padded_planes(sources.len(), shape, tail, 0.0, |p, y, target| {
        for (v, &s) in target.iter_mut().zip(&sources[p][y * width..][..width]) {
            v.write(s);
        }
    })
}

/// The input planes of `x` (`[N, C_i, H, W]` each) image by image, channel `c` counted across
/// the parts (as if they were concatenated).
pub(super) fn source_planes<'a>(x: &[&'a [f32]], shape: Shape) -> Vec<&'a [f32]> {
    let plane = shape.size[0] * shape.size[1];
    let mut sources = Vec::with_capacity(shape.batch * shape.channels_in);
    for image in 0..shape.batch {
        for part in x {
            let channels = part.len() / (shape.batch * plane).max(1);
            let part = &part[image * channels * plane..][..channels * plane];
            sources.extend(part.chunks_exact(plane.max(1)).take(channels));
        }
    }
    sources
}

/// `planes` zero-padded planes of `shape`'s padded size, then `tail` zeros: plane `p`'s input
/// row `y` (its `W` middle values) written by `row(p, y, middle)`, every other value `zero`.
/// The planes are filled in parallel.
pub(super) fn padded_planes<T: Copy + Send + Sync>(
    planes: usize,
    shape: Shape,
    tail: usize,
    zero: T,
    row: impl Fn(usize, usize, &mut [MaybeUninit<T>]) + Sync + Send,
) -> Vec<T> {
    let [height, width] = shape.size;
    let [padded_h, padded_w] = shape.padded_size();
    let [pad_h, pad_w] = shape.padding;
    let padded_plane = padded_h * padded_w;
    let len = planes * padded_plane + tail;
    let mut padded: Vec<T> = Vec::with_capacity(len);
    let fill = |p: usize, target: &mut [MaybeUninit<T>]| {
        for (y, target) in target.chunks_exact_mut(padded_w).enumerate() {
            let inside = y >= pad_h && y - pad_h < height;
            let (left, rest) = target.split_at_mut(pad_w);
            let (middle, right) = rest.split_at_mut(width);
            left.iter_mut().chain(right.iter_mut()).for_each(|v| {
                v.write(zero);
            });
            if inside {
                row(p, y - pad_h, middle);
            } else {
                middle.iter_mut().for_each(|v| {
                    v.write(zero);
                });
            }
        }
    };
    let spare = &mut padded.spare_capacity_mut()[..len];
    let (planes_part, tail) = spare.split_at_mut(planes * padded_plane);
    tail.iter_mut().for_each(|v| {
        v.write(zero);
    });
    parallel::for_each_chunk(planes_part, padded_plane, fill);
    // SAFETY: every one of the `len` values was written above (each padded plane row by row:
    // left zeros, the input row (`row` writes all of it) or zeros, right zeros; then the
    // tail).
    unsafe { padded.set_len(len) };
    padded
}

std::thread_local! {
    /// Each thread's scratch buffer, reused band after band.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Run `f` on this thread's scratch buffer of at least `len` values (holding anything).
/// `f` must not call it again.
pub(super) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        if buffer.len() < len {
            buffer.resize(len, 0.0);
        }
        f(&mut buffer[..len])
    })
}

/// How the output rows of every image are cut into bands of about [`PIXELS_PER_BAND`] pixels;
/// the bands of the batch are numbered image by image.
#[derive(Clone, Copy)]
pub(super) struct Bands {
    /// Output rows of a band (the last band of an image may have fewer).
    rows: usize,
    /// Bands per image.
    per_image: usize,
    /// Output rows of an image.
    out_h: usize,
}

impl Bands {
    pub(super) fn of(shape: Shape) -> Self {
        let [out_h, out_w] = shape.out_size();
        let rows = (PIXELS_PER_BAND / out_w.max(1)).clamp(1, out_h.max(1));
        Self {
            rows,
            per_image: out_h.div_ceil(rows),
            out_h,
        }
    }

    /// Bands in a batch of `batch` images.
    pub(super) fn count(&self, batch: usize) -> usize {
        batch * self.per_image
    }

    /// Band `task`'s image and output rows.
    pub(super) fn band(&self, task: usize) -> (usize, std::ops::Range<usize>) {
        let first = (task % self.per_image) * self.rows;
        (
            task / self.per_image,
            first..(first + self.rows).min(self.out_h),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::kernels::values;

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

    /// The AMX products (where this CPU has them) against the definition (f64 loops) of the
    /// convolution of the input and kernel rounded to bfloat16 (the bias is not): two groups
    /// of output channels and one alone, input channels in a whole chunk and a partial one, an
    /// odd number of 16-pixel columns, several bands; the input in two parts.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn the_bfloat16_products_are_the_convolution_of_rounded_operands() {
        if !super::super::amx::available() {
            eprintln!("no AMX on this CPU: the bfloat16 products are not tested here");
            return;
        }
        let round = super::super::amx::rounded;
        for (i, shape) in [
            Shape {
                batch: 2,
                channels_in: 40,
                size: [37, 29],
                channels_out: 48,
                kernel: [3, 3],
                padding: [1, 1],
            },
            Shape {
                batch: 1,
                channels_in: 32,
                size: [8, 13],
                channels_out: 32,
                kernel: [3, 3],
                padding: [1, 1],
            },
            Shape {
                batch: 2,
                channels_in: 96,
                size: [12, 12],
                channels_out: 128,
                kernel: [3, 3],
                padding: [1, 1],
            },
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
            let plane = h * w;
            let split = 16 * shape.batch * plane;
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
            let ours = conv2d_on(
                Products::Amx,
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
            assert!(worst < 1e-4, "{shape:?}: {worst}");
            // And the rounding matters: the f32 convolution differs by more.
            let exact = by_definition(&x, &weight, Some(&bias), shape);
            let apart = ours
                .iter()
                .zip(&exact)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(apart > 1e-3, "{shape:?}: {apart}");
        }
    }

    /// Against the definition (f64 loops): several bands per image (the last one short),
    /// images narrower than the kernel's reach, no padding, a non-square kernel, no bias; the
    /// input whole and in two parts; each epilogue.
    #[test]
    fn the_banded_convolution_is_the_convolution() {
        for (i, shape) in [
            Shape {
                batch: 2,
                channels_in: 3,
                size: [40, 50],
                channels_out: 5,
                kernel: [3, 3],
                padding: [1, 1],
            },
            Shape {
                batch: 1,
                channels_in: 2,
                size: [7, 2],
                channels_out: 3,
                kernel: [3, 3],
                padding: [1, 1],
            },
            Shape {
                batch: 2,
                channels_in: 4,
                size: [9, 30],
                channels_out: 2,
                kernel: [3, 2],
                padding: [0, 0],
            },
            Shape {
                batch: 1,
                channels_in: 6,
                size: [300, 5],
                channels_out: 4,
                kernel: [3, 3],
                padding: [2, 1],
            },
            Shape {
                batch: 2,
                channels_in: 13,
                size: [10, 21],
                channels_out: 11,
                kernel: [3, 3],
                padding: [1, 1],
            },
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
