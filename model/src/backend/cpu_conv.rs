//! The CPU convolution of the flex backend and its two gradients: im2col straight from NCHW,
//! one band of output rows at a time, and a GEMM (the `gemm` crate) per band, the bands in
//! parallel (rayon, with the `parallel` feature). The forward GEMM writes each band into the
//! NCHW output in place; the input gradient is the forward convolution of the output gradient
//! with the flipped, transposed kernel; the weight gradient sums one GEMM per band.
//!
//! burn-flex 0.21 first copies the whole input to NHWC on one thread, then gathers columns and
//! scatters each tile's result into NCHW; here every copy is a contiguous row segment and the
//! output needs no scatter. Stride 1, dilation 1 and one group (every BRN convolution); other
//! convolutions stay with flex (see `super::is_plain`).
//!
//! The forward convolution also reads its input from several tensors as if concatenated along
//! the channels (the LSTM's `cat[features, h, h_other]`, never materialised), and applies the
//! model's ReLU and residual add to each band while it is in cache ([`Epilogue`]).

/// About how many output pixels one band covers (whole rows): its columns,
/// `C_in·K_h·K_w x pixels` floats, stay in a core's cache.
const PIXELS_PER_BAND: usize = 768;

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
    /// Rows of the im2col columns: `C_in·K_h·K_w`.
    pub fn depth(&self) -> usize {
        self.channels_in * self.kernel[0] * self.kernel[1]
    }

    /// Output height and width.
    pub fn out_size(&self) -> [usize; 2] {
        [
            self.size[0] + 2 * self.padding[0] + 1 - self.kernel[0],
            self.size[1] + 2 * self.padding[1] + 1 - self.kernel[1],
        ]
    }
}

/// A raw pointer that the bands share; each band writes its own rows only.
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
    let [out_h, out_w] = shape.out_size();
    let out_plane = out_h * out_w;
    let len = shape.batch * shape.channels_out * out_plane;
    // Not zeroed: every band writes each of its values (the bias, or the GEMM without reading).
    let mut output: Vec<f32> = Vec::with_capacity(len);
    let bands = Bands::of(shape);
    let out = Output(output.as_mut_ptr());
    let run = |task: usize| {
        let (image, rows) = bands.band(task);
        with_im2col(x, shape, image, rows.clone(), |columns| {
            // SAFETY: `band` writes these rows of every output channel of `image` only, and
            // the tasks cover disjoint (image, rows) pairs; `output` outlives them.
            unsafe { band(weight, bias, shape, image, rows, out, epilogue, columns) }
        });
    };
    let tasks = bands.count(shape.batch);
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        (0..tasks).into_par_iter().for_each(run);
    }
    #[cfg(not(feature = "parallel"))]
    (0..tasks).for_each(run);
    // SAFETY: the bands have written all `len` values (see above).
    unsafe { output.set_len(len) };
    output
}

/// One band: output rows `rows` of image `image`, every output channel, from its im2col
/// `columns`.
///
/// # Safety
/// `out` points to the whole `[N, C_out, H_out, W_out]` output; no other band writes these
/// rows of this image.
#[allow(clippy::too_many_arguments)]
unsafe fn band(
    weight: &[f32],
    bias: Option<&[f32]>,
    shape: Shape,
    image: usize,
    rows: std::ops::Range<usize>,
    out: Output,
    epilogue: Epilogue,
    columns: &[f32],
) {
    let [out_h, out_w] = shape.out_size();
    let pixels = rows.len() * out_w;
    let depth = shape.depth();

    // The band's output, channel by channel: rows.start·W_out.. of each output plane.
    let out_plane = out_h * out_w;
    let dst = out
        .0
        .add(image * shape.channels_out * out_plane + rows.start * out_w);
    if let Some(bias) = bias {
        for (o, &value) in bias.iter().enumerate() {
            std::slice::from_raw_parts_mut(dst.add(o * out_plane), pixels).fill(value);
        }
    }
    // dst[o, p] (+)= Σ_k weight[o, k] · columns[k, p]
    gemm::gemm(
        shape.channels_out,
        pixels,
        depth,
        dst,
        1,
        out_plane as isize,
        bias.is_some(),
        weight.as_ptr(),
        1,
        depth as isize,
        columns.as_ptr(),
        1,
        pixels as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );

    // The epilogue, on each channel's band while it is in cache.
    let first = image * shape.channels_out * out_plane + rows.start * out_w;
    for o in 0..shape.channels_out {
        let values = std::slice::from_raw_parts_mut(dst.add(o * out_plane), pixels);
        match epilogue {
            Epilogue::None => {}
            Epilogue::Relu => values.iter_mut().for_each(|v| *v = v.max(0.0)),
            Epilogue::ReluAdd(shortcut) => {
                let shortcut = &shortcut[first + o * out_plane..][..pixels];
                for (v, s) in values.iter_mut().zip(shortcut) {
                    *v = (v.max(0.0) + s).max(0.0);
                }
            }
        }
    }
}

std::thread_local! {
    /// Each thread's im2col buffer, reused band after band (every value is rewritten).
    static COLUMNS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Run `f` on the im2col columns of output rows `rows` of image `image` (see [`im2col`]), in
/// this thread's reused buffer. `f` must not call it again.
fn with_im2col<R>(
    x: &[&[f32]],
    shape: Shape,
    image: usize,
    rows: std::ops::Range<usize>,
    f: impl FnOnce(&[f32]) -> R,
) -> R {
    COLUMNS.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        let len = shape.depth() * rows.len() * shape.out_size()[1];
        if buffer.len() < len {
            buffer.resize(len, 0.0);
        }
        im2col(x, shape, image, rows, &mut buffer[..len]);
        f(&buffer[..len])
    })
}

/// im2col for output rows `rows` of image `image`: the columns `[C_in·K_h·K_w, rows·W_out]`,
/// whose row `(c, a, b)` holds `x[c, y + a − pad_h, x + b − pad_w]` for every output pixel
/// `(y, x)` of the band, zero outside the image, channel `c` counted across the parts of `x`;
/// every copy is one contiguous segment of an input row, and every value of `columns` is
/// written (zeros included), so it may hold anything before.
fn im2col(
    x: &[&[f32]],
    shape: Shape,
    image: usize,
    rows: std::ops::Range<usize>,
    columns: &mut [f32],
) {
    let plane = shape.size[0] * shape.size[1];
    let mut first_channel = 0;
    for part in x {
        let channels = part.len() / (shape.batch * plane);
        let input = &part[image * channels * plane..][..channels * plane];
        im2col_part(
            input,
            shape,
            first_channel..first_channel + channels,
            &rows,
            columns,
        );
        first_channel += channels;
    }
}

/// The rows of the columns for channels `channels` (of the whole input), from `input`, one
/// image's `[channels.len(), H, W]`.
fn im2col_part(
    input: &[f32],
    shape: Shape,
    channels: std::ops::Range<usize>,
    rows: &std::ops::Range<usize>,
    columns: &mut [f32],
) {
    let [height, width] = shape.size;
    let [kernel_h, kernel_w] = shape.kernel;
    let [pad_h, pad_w] = shape.padding;
    let [_, out_w] = shape.out_size();
    let pixels = rows.len() * out_w;
    let plane = height * width;
    for (local, c) in channels.enumerate() {
        for a in 0..kernel_h {
            for b in 0..kernel_w {
                let row = &mut columns[((c * kernel_h + a) * kernel_w + b) * pixels..][..pixels];
                // Output columns whose input column x + b − pad_w lies inside the image.
                let x_first = pad_w.saturating_sub(b).min(out_w);
                let x_last = (width + pad_w).saturating_sub(b).min(out_w).max(x_first);
                for (i, y) in rows.clone().enumerate() {
                    let target = &mut row[i * out_w..][..out_w];
                    let source_row = y + a;
                    if source_row < pad_h || source_row - pad_h >= height {
                        target.fill(0.0);
                        continue;
                    }
                    let source = &input[local * plane + (source_row - pad_h) * width..][..width];
                    let offset = x_first + b - pad_w;
                    target[..x_first].fill(0.0);
                    target[x_first..x_last]
                        .copy_from_slice(&source[offset..offset + (x_last - x_first)]);
                    target[x_last..].fill(0.0);
                }
            }
        }
    }
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
    let mut flipped = vec![0f32; weight.len()];
    for o in 0..c_out {
        for c in 0..c_in {
            for a in 0..kernel_h {
                for b in 0..kernel_w {
                    flipped[((c * c_out + o) * kernel_h + a) * kernel_w + b] =
                        weight[((o * c_in + c) * kernel_h + (kernel_h - 1 - a)) * kernel_w
                            + (kernel_w - 1 - b)];
                }
            }
        }
    }
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
    conv2d(&[output_grad], &flipped, None, transposed, Epilogue::None)
}

/// The gradient of the weight, `dW[o, k] = Σ_bands Σ_p dY[o, p] · columns[k, p]`: one GEMM per
/// band of output rows, summed over runs of [`BANDS_PER_SUM`] bands in parallel, then the runs'
/// sums added in order, so the result does not depend on the number of threads or their timing
/// (a resumed training run repeats an uninterrupted one bit for bit).
///
/// # Shapes
/// - `x`: `[N, C_in, H, W]`, `output_grad`: `[N, C_out, H_out, W_out]`
/// - output: `[C_out, C_in, K_h, K_w]`
pub fn weight_gradient(x: &[f32], output_grad: &[f32], shape: Shape) -> Vec<f32> {
    let [out_h, out_w] = shape.out_size();
    let out_plane = out_h * out_w;
    let depth = shape.depth();
    let size = shape.channels_out * depth;
    let bands = Bands::of(shape);
    let accumulate = |mut sum: Vec<f32>, task: usize| {
        let (image, rows) = bands.band(task);
        let pixels = rows.len() * out_w;
        let grad = &output_grad[image * shape.channels_out * out_plane + rows.start * out_w..];
        // SAFETY: sum is C_out x depth; grad holds C_out rows of `pixels` at stride out_plane
        // from this band's first pixel; columns is depth x pixels.
        with_im2col(&[x], shape, image, rows, |columns| unsafe {
            gemm::gemm(
                shape.channels_out,
                depth,
                pixels,
                sum.as_mut_ptr(),
                1,
                depth as isize,
                true,
                grad.as_ptr(),
                1,
                out_plane as isize,
                columns.as_ptr(),
                pixels as isize,
                1,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        });
        sum
    };
    let tasks = bands.count(shape.batch);
    let run = |first: usize| {
        (first..(first + BANDS_PER_SUM).min(tasks)).fold(vec![0f32; size], accumulate)
    };
    let firsts = (0..tasks).step_by(BANDS_PER_SUM);
    #[cfg(feature = "parallel")]
    let sums: Vec<Vec<f32>> = {
        use rayon::prelude::*;
        firsts
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(run)
            .collect()
    };
    #[cfg(not(feature = "parallel"))]
    let sums: Vec<Vec<f32>> = firsts.map(run).collect();
    let mut sums = sums.into_iter();
    let mut total = sums.next().unwrap_or_else(|| vec![0f32; size]);
    for sum in sums {
        total.iter_mut().zip(sum).for_each(|(t, s)| *t += s);
    }
    total
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
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        (0..channels).into_par_iter().map(channel).collect()
    }
    #[cfg(not(feature = "parallel"))]
    (0..channels).map(channel).collect()
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
