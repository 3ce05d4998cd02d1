//! The CPU convolution of the flex backend and its two gradients, without im2col: the input is
//! copied once, zero-padded, and the convolution is `K_h·K_w` matrix products per band of
//! output rows, one per kernel tap, each reading the padded input at that tap's shift in place
//! (the `gemm` crate, the bands in parallel with rayon under the `parallel` feature).
//!
//! The trick: in a padded plane of width `W_p = W + 2·p_w`, output pixel `(y, x)` reads
//! `X_p[y + a, x + b]` at tap `(a, b)`, which is flat index `q + a·W_p + b` for `q = y·W_p + x`.
//! So over the "wide" output (every row `W_p` long, the last `W_p − W_out` columns garbage)
//! tap `(a, b)` is one matrix product `Y_wide += W_ab · X_p[:, shift_ab ..]` whose right-hand
//! side is the padded input itself, rows `C_in` apart. The wide band is then copied into the
//! NCHW output without its garbage columns, applying the bias-free epilogue on the way.
//! im2col instead writes `K_h·K_w` copies of the input, and gemm packs them once more.
//!
//! - the input gradient is the same convolution of the output gradient with the flipped,
//!   transposed kernel;
//! - the weight gradient at tap `(a, b)` is `dY_wide · X_p[:, shift_ab ..]ᵀ` (the garbage
//!   columns of `dY_wide` set to zero), one product per band and tap, summed in a fixed order.
//!
//! Stride 1, dilation 1 and one group (every BRN convolution); other convolutions stay with
//! flex (see `super::is_plain`). The forward convolution also reads its input from several
//! tensors as if concatenated along the channels (the LSTM's `cat[features, h, h_other]`: the
//! padded copy is the concatenation), and applies the model's ReLU and residual add to each band
//! while it is in cache ([`Epilogue`]).

use std::mem::MaybeUninit;

use super::parallel;

/// About how many output pixels one band covers (whole rows): its wide output, `C_out x
/// rows·W_p` floats, and the input rows it reads stay in a core's cache.
const PIXELS_PER_BAND: usize = 768;

/// A band's wide output is rounded up to a multiple of this many pixels (garbage too): gemm
/// copies ("packs") a left-hand side whose rows are not a multiple of its SIMD width (16
/// floats with AVX-512) before every product, and the pixels are those rows.
const ROW_MULTIPLE: usize = 16;

/// The pixels of a band's wide output: `rows·W_p`, rounded up to [`ROW_MULTIPLE`].
fn wide_len(rows: usize, padded_w: usize) -> usize {
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
    fn padded_size(&self) -> [usize; 2] {
        [
            self.size[0] + 2 * self.padding[0],
            self.size[1] + 2 * self.padding[1],
        ]
    }

    /// Kernel taps, `K_h·K_w`.
    fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }
}

/// A raw pointer that the bands share; each band writes its own part only.
#[derive(Clone, Copy)]
struct Output(*mut f32);
// SAFETY: the bands write disjoint parts of the output (see `band`).
unsafe impl Send for Output {}
unsafe impl Sync for Output {}

/// What the forward convolution does to its output `y` in the same pass.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    /// Nothing: `y`.
    None,
    /// `relu(y)`.
    Relu,
    /// `relu(relu(y) + shortcut)` (a ResBlock's end), `shortcut` shaped as the output.
    ReluAdd(&'a [f32]),
}

/// `y = conv(cat(x), weight) + bias`, then `epilogue`, all row-major NCHW /
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
    epilogue: Epilogue,
) -> Vec<f32> {
    // taps[a·K_w + b][o][c] = weight[o, c, a, b]
    let taps = taps_of(shape, |o, c, tap| {
        weight[(o * shape.channels_in + c) * shape.taps() + tap]
    });
    convolve(x, &taps, bias, shape, epilogue)
}

/// The kernel as one `[C_out, C_in]` matrix per tap, `[K_h·K_w][C_out][C_in]`, from
/// `value(o, c, tap)`.
fn taps_of(shape: Shape, value: impl Fn(usize, usize, usize) -> f32) -> Vec<f32> {
    let (c_in, c_out) = (shape.channels_in, shape.channels_out);
    (0..shape.taps())
        .flat_map(|tap| (0..c_out).flat_map(move |o| (0..c_in).map(move |c| (o, c, tap))))
        .map(|(o, c, tap)| value(o, c, tap))
        .collect()
}

/// [`conv2d`] with the kernel given as [`taps_of`] lays it out.
fn convolve(
    x: &[&[f32]],
    taps: &[f32],
    bias: Option<&[f32]>,
    shape: Shape,
    epilogue: Epilogue,
) -> Vec<f32> {
    let [out_h, out_w] = shape.out_size();
    let len = shape.batch * shape.channels_out * out_h * out_w;
    let padded = pad(x, shape);
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
            unsafe { band(&padded, taps, bias, shape, image, rows, out, epilogue, wide) }
        });
    };
    parallel::for_each_index(bands.count(shape.batch), run);
    // SAFETY: the bands have written all `len` values (see above).
    unsafe { output.set_len(len) };
    output
}

/// One band: output rows `rows` of image `image`, every output channel, as `K_h·K_w` products
/// into `wide` (`C_out x rows·W_p`), then copied into the output with the epilogue.
///
/// # Safety
/// `out` points to the whole `[N, C_out, H_out, W_out]` output; no other band writes these
/// rows of this image; `padded` is [`pad`]'s result for this shape.
#[allow(clippy::too_many_arguments)]
unsafe fn band(
    padded: &[f32],
    taps: &[f32],
    bias: Option<&[f32]>,
    shape: Shape,
    image: usize,
    rows: std::ops::Range<usize>,
    out: Output,
    epilogue: Epilogue,
    wide: &mut [f32],
) {
    let [out_h, out_w] = shape.out_size();
    let [padded_h, padded_w] = shape.padded_size();
    let plane = padded_h * padded_w;
    let (c_in, c_out) = (shape.channels_in, shape.channels_out);
    let wide_len = wide_len(rows.len(), padded_w);
    let input = &padded[image * c_in * plane..];

    // wide[o, q] (+)= Σ_c taps[a, b][o, c] · input[c, (rows.start + a)·W_p + b + q]: the
    // pixels are the product's rows (contiguous in both), the channels its columns.
    let mut read = false;
    if let Some(bias) = bias {
        for (o, &value) in bias.iter().enumerate() {
            wide[o * wide_len..][..wide_len].fill(value);
        }
        read = true;
    }
    for a in 0..shape.kernel[0] {
        for b in 0..shape.kernel[1] {
            let tap = &taps[(a * shape.kernel[1] + b) * c_out * c_in..][..c_out * c_in];
            let shifted = &input[(rows.start + a) * padded_w + b..];
            // SAFETY: the last value read, channel C_in − 1 at q = wide_len − 1, is at
            // (C_in − 1)·plane + (rows.end − 1 + a)·W_p + b + W_p − 1 + ROW_MULTIPLE − 1 <
            // C_in·plane + K_w + ROW_MULTIPLE from `input`'s start (rows.end − 1 + a < H_p),
            // which `pad` leaves in the buffer; `wide` holds
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

    // The band into the NCHW output without the garbage columns, the epilogue on the way.
    let out_plane = out_h * out_w;
    for o in 0..c_out {
        for (i, y) in rows.clone().enumerate() {
            let first = (image * c_out + o) * out_plane + y * out_w;
            let values = &wide[o * wide_len + i * padded_w..][..out_w];
            let target = std::slice::from_raw_parts_mut(out.0.add(first), out_w);
            match epilogue {
                Epilogue::None => target.copy_from_slice(values),
                Epilogue::Relu => {
                    for (t, v) in target.iter_mut().zip(values) {
                        *t = v.max(0.0);
                    }
                }
                Epilogue::ReluAdd(shortcut) => {
                    let shortcut = &shortcut[first..][..out_w];
                    for ((t, v), s) in target.iter_mut().zip(values).zip(shortcut) {
                        *t = (v.max(0.0) + s).max(0.0);
                    }
                }
            }
        }
    }
}

/// `dst (+)= lhs · rhs` on this thread (gemm), `[m, n, k]` the sizes: `dst` `m x n`, `lhs`
/// `m x k`, `rhs` `k x n`, each given as its first value and the distance between its columns
/// (its rows are adjacent); `read` adds to what `dst` holds, else overwrites it.
///
/// # Safety
/// Each pointer reaches every value of its matrix so laid out.
unsafe fn product(
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
fn pad(x: &[&[f32]], shape: Shape) -> Vec<f32> {
    let [height, width] = shape.size;
    let [padded_h, padded_w] = shape.padded_size();
    let [pad_h, pad_w] = shape.padding;
    let (plane, padded_plane) = (height * width, padded_h * padded_w);
    let planes = shape.batch * shape.channels_in;
    let len = planes * padded_plane + shape.kernel[1] + ROW_MULTIPLE;
    let mut padded: Vec<f32> = Vec::with_capacity(len);
    // Which part and plane of it padded plane `p` comes from.
    let mut sources: Vec<&[f32]> = Vec::with_capacity(planes);
    for image in 0..shape.batch {
        for part in x {
            let channels = part.len() / (shape.batch * plane).max(1);
            let part = &part[image * channels * plane..][..channels * plane];
            sources.extend(part.chunks_exact(plane.max(1)).take(channels));
        }
    }
    let fill = |p: usize, target: &mut [MaybeUninit<f32>]| {
        let source = sources[p];
        for (row, target) in target.chunks_exact_mut(padded_w).enumerate() {
            let inside = row >= pad_h && row - pad_h < height;
            let (left, rest) = target.split_at_mut(pad_w);
            let (middle, right) = rest.split_at_mut(width);
            left.iter_mut().chain(right.iter_mut()).for_each(|v| {
                v.write(0.0);
            });
            if inside {
                let source = &source[(row - pad_h) * width..][..width];
                for (v, &s) in middle.iter_mut().zip(source) {
                    v.write(s);
                }
            } else {
                middle.iter_mut().for_each(|v| {
                    v.write(0.0);
                });
            }
        }
    };
    let spare = &mut padded.spare_capacity_mut()[..len];
    let (planes_part, tail) = spare.split_at_mut(planes * padded_plane);
    tail.iter_mut().for_each(|v| {
        v.write(0.0);
    });
    parallel::for_each_chunk(planes_part, padded_plane, fill);
    // SAFETY: every one of the `len` values was written above (each padded plane row by row:
    // left zeros, the input row or zeros, right zeros; then the tail).
    unsafe { padded.set_len(len) };
    padded
}

std::thread_local! {
    /// Each thread's scratch buffer, reused band after band.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Run `f` on this thread's scratch buffer of at least `len` values (holding anything).
/// `f` must not call it again.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
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
struct Bands {
    /// Output rows of a band (the last band of an image may have fewer).
    rows: usize,
    /// Bands per image.
    per_image: usize,
    /// Output rows of an image.
    out_h: usize,
}

impl Bands {
    fn of(shape: Shape) -> Self {
        let [out_h, out_w] = shape.out_size();
        let rows = (PIXELS_PER_BAND / out_w.max(1)).clamp(1, out_h.max(1));
        Self {
            rows,
            per_image: out_h.div_ceil(rows),
            out_h,
        }
    }

    /// Bands in a batch of `batch` images.
    fn count(&self, batch: usize) -> usize {
        batch * self.per_image
    }

    /// Band `task`'s image and output rows.
    fn band(&self, task: usize) -> (usize, std::ops::Range<usize>) {
        let first = (task % self.per_image) * self.rows;
        (
            task / self.per_image,
            first..(first + self.rows).min(self.out_h),
        )
    }
}

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
pub fn input_gradient(output_grad: &[f32], weight: &[f32], shape: Shape) -> Vec<f32> {
    let [kernel_h, kernel_w] = shape.kernel;
    let (c_in, c_out) = (shape.channels_in, shape.channels_out);
    let transposed = Shape {
        batch: shape.batch,
        channels_in: c_out,
        size: shape.out_size(),
        channels_out: c_in,
        kernel: shape.kernel,
        padding: [
            kernel_h - 1 - shape.padding[0],
            kernel_w - 1 - shape.padding[1],
        ],
    };
    // taps'[a·K_w + b][c][o] = W'[c, o, a, b]
    let taps = taps_of(transposed, |c, o, tap| {
        let (a, b) = (tap / kernel_w, tap % kernel_w);
        let flipped = (kernel_h - 1 - a) * kernel_w + (kernel_w - 1 - b);
        weight[(o * c_in + c) * shape.taps() + flipped]
    });
    convolve(&[output_grad], &taps, None, transposed, Epilogue::None)
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
pub fn weight_gradient(x: &[f32], output_grad: &[f32], shape: Shape) -> Vec<f32> {
    let [out_h, out_w] = shape.out_size();
    let [padded_h, padded_w] = shape.padded_size();
    let (out_plane, plane) = (out_h * out_w, padded_h * padded_w);
    let (c_in, c_out) = (shape.channels_in, shape.channels_out);
    let padded = pad(&[x], shape);
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
            let input = &padded[image * c_in * plane..];
            for a in 0..shape.kernel[0] {
                for b in 0..shape.kernel[1] {
                    let tap = a * shape.kernel[1] + b;
                    let shifted = &input[(rows.start + a) * padded_w + b..];
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
            }
        });
        sum
    };
    let tasks = bands.count(shape.batch);
    let run = |first: usize| {
        (first..(first + BANDS_PER_SUM).min(tasks)).fold(vec![0f32; size], accumulate)
    };
    let sums = parallel::map_indices(tasks.div_ceil(BANDS_PER_SUM), |i| run(i * BANDS_PER_SUM));
    let mut sums = sums.into_iter();
    let mut total = sums.next().unwrap_or_else(|| vec![0f32; size]);
    for sum in sums {
        total.iter_mut().zip(sum).for_each(|(t, s)| *t += s);
    }
    // [tap][c][o] → [o][c][tap]
    let taps = shape.taps();
    let mut gradient = vec![0f32; size];
    for (tap, block) in total.chunks_exact(c_out * c_in).enumerate() {
        for (c, column) in block.chunks_exact(c_out).enumerate() {
            for (o, &value) in column.iter().enumerate() {
                gradient[(o * c_in + c) * taps + tap] = value;
            }
        }
    }
    gradient
}

/// The gradient of the bias, `db[o] = Σ_n Σ_p dY[n, o, p]`, each channel summed in order in
/// f64 (the channels in parallel): the same bits at any thread count.
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
        (0..batch)
            .map(|n| {
                output_grad[(n * channels + o) * pixels..][..pixels]
                    .iter()
                    .map(|&v| v as f64)
                    .sum::<f64>()
            })
            .sum::<f64>() as f32
    };
    parallel::map_indices(channels, channel)
}

/// How many bands' weight gradients one task sums before the tasks' sums are added.
const BANDS_PER_SUM: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Pseudo-random values in [-1, 1).
    fn values(count: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..count)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
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
            let ours = conv2d(&[&x], &weight, bias, shape, Epilogue::None);
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
            let relu = conv2d(&parts, &weight, bias, shape, Epilogue::Relu);
            check(
                relu,
                reference.iter().map(|v| v.max(0.0)).collect(),
                "parts, relu",
            );
            let shortcut = values(reference.len(), 30 + i as u64);
            let residual = conv2d(&parts, &weight, bias, shape, Epilogue::ReluAdd(&shortcut));
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

    /// Both gradients against their definitions (f64 loops) for `L = Σ y·g`:
    /// `dX[n, c, i, j] = Σ g[n, o, i + p − a, j + p − b] · W[o, c, a, b]` and
    /// `dW[o, c, a, b] = Σ g[n, o, y, x] · X_pad[n, c, y + a, x + b]`.
    #[test]
    fn the_banded_gradients_are_the_gradients() {
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
                channels_in: 4,
                size: [9, 30],
                channels_out: 2,
                kernel: [3, 2],
                padding: [0, 1],
            },
        ]
        .into_iter()
        .enumerate()
        {
            let [h, w] = shape.size;
            let [oh, ow] = shape.out_size();
            let [kh, kw] = shape.kernel;
            let [ph, pw] = shape.padding;
            let (n, ci, co) = (shape.batch, shape.channels_in, shape.channels_out);
            let x = values(n * ci * h * w, 30 + i as u64);
            let weight = values(co * ci * kh * kw, 40 + i as u64);
            let grad = values(n * co * oh * ow, 50 + i as u64);
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
            let worst = |ours: &[f32], reference: &[f64]| {
                assert_eq!(ours.len(), reference.len());
                ours.iter()
                    .zip(reference)
                    .map(|(a, b)| (*a as f64 - b).abs())
                    .fold(0f64, f64::max)
            };
            assert!(input_gradient_applies(shape));
            let input = worst(&input_gradient(&grad, &weight, shape), &dx);
            let weights = worst(&weight_gradient(&x, &grad, shape), &dw);
            assert!(
                input < 1e-4 && weights < 1e-3,
                "{shape:?}: dX {input}, dW {weights}"
            );
        }
    }
}
