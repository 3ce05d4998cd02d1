//! How the convolution's operands lie in memory, shared by every kind of products: the
//! sizes of one convolution ([`Shape`]), the zero-padded input planes that the products read
//! in place at each tap's shift, the "wide" output rows (`W_p` long, garbage past `W_out`),
//! and the bands of output rows that run in parallel (see [`super::conv`] for the trick).

use std::borrow::Cow;
use std::mem::MaybeUninit;

use super::elementwise::{running_sums, sum_of, Through, SUMS};
use super::parallel;

/// About how many output pixels one band covers (whole rows): its wide output, `C_out x
/// rows·W_p` floats, and the input rows it reads stay in a core's cache.
const PIXELS_PER_BAND: usize = 768;

/// A band's wide output is rounded up to a multiple of this many pixels (garbage too): gemm
/// copies ("packs") a left-hand side whose rows are not a multiple of its SIMD width (16
/// floats with AVX-512) before every product, and the pixels are those rows.
pub(super) const ROW_MULTIPLE: usize = 16;

/// The kernel `taps[tap][o][c]` (`[K_h·K_w][C_out][C_in]`) as the f32 micro-kernels read it
/// ([`super::avx512`], [`super::narrow`]): per block of `block` output channels (a tile's),
/// per input channel, per tap, the block's weights (zeros past `C_out`).
#[cfg(any(
    target_arch = "x86_64",
    any(test, all(target_arch = "wasm32", target_feature = "simd128"))
))]
pub(super) fn pack(
    taps: &[f32],
    taps_count: usize,
    [c_out, c_in]: [usize; 2],
    block: usize,
) -> Vec<f32> {
    let blocks = c_out.div_ceil(block);
    let mut packed = Vec::with_capacity(blocks * c_in * taps_count * block);
    // One loop per index of the layout, outermost first (no division per value: this runs on
    // one thread before every convolution).
    for first in (0..blocks).map(|b| b * block) {
        for c in 0..c_in {
            for tap in 0..taps_count {
                packed.extend((first..first + block).map(|o| {
                    if o < c_out {
                        taps[(tap * c_out + o) * c_in + c]
                    } else {
                        0.0
                    }
                }));
            }
        }
    }
    packed
}

/// One tile of the banded products' wide output, as the micro-kernels ([`super::avx512`],
/// [`super::narrow`], `avx512_bf16`) keep it in registers: a block of output channels by a few
/// vectors of pixels, over a run of input channels (or bfloat16 channel pairs, `T = u32`);
/// each kernel has its own loop over it.
#[cfg(any(
    target_arch = "x86_64",
    any(test, all(target_arch = "wasm32", target_feature = "simd128"))
))]
pub(super) struct Tile<'a, T> {
    /// The tile's first output value (`wide_len` apart per channel).
    pub(super) out: *mut f32,
    pub(super) wide_len: usize,
    /// Output channels to store (the block's but in the last block).
    pub(super) channels: usize,
    pub(super) plane: usize,
    pub(super) shifts: &'a [usize],
    /// The run's first input channel (or pair) at the tile's first pixel.
    pub(super) input: *const T,
    /// Input channels (or pairs) in the run.
    pub(super) inputs: usize,
    /// The block's packed weights from the run's first channel (or pair).
    pub(super) weights: *const T,
    /// The bias to start from (the first run), else `None`: add to what `out` holds.
    pub(super) init: Option<&'a [f32]>,
}

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

#[cfg(test)]
impl Shape {
    /// A shape in one line, for the tests: `[N, C_in, C_out]`, the input's size, the kernel's
    /// and the padding.
    pub(crate) fn of(
        [batch, channels_in, channels_out]: [usize; 3],
        size: [usize; 2],
        kernel: [usize; 2],
        padding: [usize; 2],
    ) -> Self {
        Self {
            batch,
            channels_in,
            size,
            channels_out,
            kernel,
            padding,
        }
    }

    /// The model's convolution in one line, for the tests' tables: 3x3, padding 1 (the
    /// output the input's size), `batch` images of `channels_in` planes of `size` into
    /// `channels_out`.
    pub(crate) fn same_3x3(
        batch: usize,
        channels_in: usize,
        size: [usize; 2],
        channels_out: usize,
    ) -> Self {
        Self::of([batch, channels_in, channels_out], size, [3, 3], [1, 1])
    }
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
pub(super) struct Output(pub(super) *mut f32);
// SAFETY: the bands write disjoint parts of the output (see `band`).
unsafe impl Send for Output {}
unsafe impl Sync for Output {}

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

/// The window of one image's input that a band's products read, padded as [`pad`] pads the
/// whole input but written into `window` (`C_in` planes of `reach` values, `reach` at least
/// the band's rows plus `K_h − 1` padded rows): each plane from padded row `first_row` on,
/// `planes` the image's input planes ([`source_planes`]). Values past the window's rows (the
/// garbage outputs' reach) are zeros.
#[cfg(any(test, all(target_arch = "wasm32", target_feature = "simd128")))]
pub(super) fn pad_window(
    planes: &[&[f32]],
    shape: Shape,
    first_row: usize,
    reach: usize,
    window: &mut [f32],
) {
    let [height, width] = shape.size;
    let [pad_h, pad_w] = shape.padding;
    let padded_w = shape.padded_size()[1];
    for (source, target) in planes.iter().zip(window.chunks_exact_mut(reach)) {
        for (i, row) in target.chunks_mut(padded_w).enumerate() {
            let y = first_row + i;
            let inside = (pad_h..pad_h + height).contains(&y);
            let middle = pad_w..(pad_w + width).min(row.len());
            if !inside || middle.is_empty() {
                row.fill(0.0);
                continue;
            }
            row[..middle.start].fill(0.0);
            let values = &source[(y - pad_h) * width..][..middle.len()];
            row[middle.clone()].copy_from_slice(values);
            row[middle.end..].fill(0.0);
        }
    }
}

/// A convolution's output gradient through the ReLUs after it, `[N, C, H, W]` with `C =
/// shape.channels_in` (the input of the input gradient's convolution, `shape` its transposed
/// shape), padded as [`pad`] pads an input, the mask applied on the way (no pass of its own);
/// and each channel's sum over the batch, the bias gradient (each plane in [`SUMS`] f64
/// running sums row after row ([`running_sums`], each row read back while in cache), then the
/// images in order: an order fixed by the shape).
pub(super) fn pad_through(grad: Through, shape: Shape) -> (Vec<f32>, Vec<f32>) {
    let (c, [height, width]) = (shape.channels_in, shape.size);
    assert_eq!(
        grad.len(),
        shape.batch * c * height * width,
        "gradient of another shape"
    );
    let tail = shape.kernel[1] + ROW_MULTIPLE;
    let row = |p: usize, y: usize, target: &mut [MaybeUninit<f32>], sums: &mut [f64; SUMS]| {
        grad.values((p * height + y) * width, target);
        // SAFETY: `values` has just written every value of `target`.
        let written = unsafe { &*(target as *const [MaybeUninit<f32>] as *const [f32]) };
        running_sums(written, sums);
    };
    let (padded, sums) = padded_planes_with(shape.batch * c, shape, tail, 0.0, row);
    let bias = (0..c)
        .map(|channel| {
            let sum = |image: usize| sum_of(&sums[image * c + channel]);
            (0..shape.batch).map(sum).sum::<f64>() as f32
        })
        .collect();
    (padded, bias)
}

/// The input of [`super::conv`]'s products: floats (one tensor, or several read as concatenated), or
/// already padded as the products read it, as the backward pass makes it from a gradient
/// through ReLUs ([`super::conv_backward`]): f32 ([`pad`]'s layout) for the f32 products, the
/// bfloat16 channel pairs ([`super::bf16::pad_pairs`]'s layout, for the products' own pair
/// count) for the bfloat16 ones.
pub(super) enum Input<'a> {
    /// `[N, C_i, H, W]` each, `Σ C_i = C_in`.
    Floats(&'a [&'a [f32]]),
    /// For the f32 products only.
    Padded(&'a [f32]),
    /// For the bfloat16 products only (AVX512-BF16 dot products, AMX tiles).
    #[cfg(target_arch = "x86_64")]
    Pairs(&'a [u32]),
}

impl<'a> Input<'a> {
    /// The input padded in f32, by [`pad`] where it is floats.
    ///
    /// # Panics
    /// If the input is bfloat16 pairs, which only the bfloat16 products read (a caller's bug).
    pub(super) fn padded(self, shape: Shape) -> Cow<'a, [f32]> {
        match self {
            Input::Floats(x) => Cow::Owned(pad(x, shape)),
            Input::Padded(padded) => Cow::Borrowed(padded),
            #[cfg(target_arch = "x86_64")]
            Input::Pairs(_) => panic!("padded bfloat16 pairs given to f32 products"),
        }
    }

    /// The input's planes ([`source_planes`]) where it is floats, which a band can pad itself
    /// ([`pad_window`]).
    #[cfg(any(test, all(target_arch = "wasm32", target_feature = "simd128")))]
    pub(super) fn planes(&self, shape: Shape) -> Option<Vec<&'a [f32]>> {
        match self {
            Input::Floats(x) => Some(source_planes(x, shape)),
            _ => None,
        }
    }

    /// The padded pairs, made by `pad` from the floats where the input is floats.
    ///
    /// # Panics
    /// If the input is padded f32, which only the f32 products read (a caller's bug).
    #[cfg(target_arch = "x86_64")]
    pub(super) fn pairs(self, pad: impl FnOnce(&[&[f32]]) -> Vec<u32>) -> Cow<'a, [u32]> {
        match self {
            Input::Floats(x) => Cow::Owned(pad(x)),
            Input::Pairs(pairs) => Cow::Borrowed(pairs),
            Input::Padded(_) => panic!("padded f32 given to bfloat16 products"),
        }
    }
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
    padded_planes_with(planes, shape, tail, zero, |p, y, middle, _: &mut ()| {
        row(p, y, middle)
    })
    .0
}

/// [`padded_planes`] with a state per plane that its rows update in order (`row(p, y, middle,
/// state)`, rows top to bottom, from `S::default()`): e.g. each plane's sum, taken in the
/// same pass. Returns the planes and the states, plane by plane.
pub(super) fn padded_planes_with<T: Copy + Send + Sync, S: Default + Send>(
    planes: usize,
    shape: Shape,
    tail: usize,
    zero: T,
    row: impl Fn(usize, usize, &mut [MaybeUninit<T>], &mut S) + Sync + Send,
) -> (Vec<T>, Vec<S>) {
    let [height, width] = shape.size;
    let [padded_h, padded_w] = shape.padded_size();
    let [pad_h, pad_w] = shape.padding;
    let padded_plane = padded_h * padded_w;
    let len = planes * padded_plane + tail;
    let mut padded: Vec<T> = Vec::with_capacity(len);
    let fill = |p: usize, target: &mut [MaybeUninit<T>]| {
        let mut state = S::default();
        for (y, target) in target.chunks_exact_mut(padded_w).enumerate() {
            let inside = y >= pad_h && y - pad_h < height;
            let (left, rest) = target.split_at_mut(pad_w);
            let (middle, right) = rest.split_at_mut(width);
            left.iter_mut().chain(right.iter_mut()).for_each(|v| {
                v.write(zero);
            });
            if inside {
                row(p, y - pad_h, middle, &mut state);
            } else {
                middle.iter_mut().for_each(|v| {
                    v.write(zero);
                });
            }
        }
        state
    };
    let spare = &mut padded.spare_capacity_mut()[..len];
    let (planes_part, tail) = spare.split_at_mut(planes * padded_plane);
    tail.iter_mut().for_each(|v| {
        v.write(zero);
    });
    let mut states = parallel::map_chunks(planes_part, padded_plane, fill);
    // Planes of no values have no rows: their states stay the default.
    states.resize_with(planes, S::default);
    // SAFETY: every one of the `len` values was written above (each padded plane row by row:
    // left zeros, the input row (`row` writes all of it) or zeros, right zeros; then the
    // tail).
    unsafe { padded.set_len(len) };
    (padded, states)
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
