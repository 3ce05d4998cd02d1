//! The convolution's products (forward, input gradient and weight gradient) as AVX512-BF16
//! dot products, in mixed precision, for x86-64 CPUs that have AVX512_BF16 but no AMX (AMD Zen
//! 4 on, Intel Cooper Lake): the operands rounded to bfloat16, every sum in f32. Training only,
//! and only when asked (`products::Precision::Mixed`).
//!
//! One `VDPBF16PS` takes 16 pairs of bfloat16 from each operand and adds each pair's dot
//! product to one of 16 f32 sums: 32 multiply-adds where an AVX-512 fused multiply-add does 16,
//! for the same issue slot. So the kernels are [`super::avx512`]'s with channels (forward)
//! or pixels (weight gradient) taken two at a time:
//!
//! - **forward and input gradient**: a tile of 8 output channels by 48 pixels of the wide
//!   output (three vectors) stays in 24 registers over every tap of a run of input channel
//!   pairs; per pair and tap, three loads of the shifted input in channel pairs
//!   ([`super::bf16::pad_pairs`]: each pixel one word holding channels `2k`, `2k + 1`) and 8
//!   broadcast weight pairs ([`pack`]) feed 24 dot products.
//! - **weight gradient**: a tile of up to 12 input channels by 32 output channels (two
//!   vectors) stays in registers over a band's pixels taken in pairs: per pixel pair, two
//!   loads of the output gradient in pixel pairs ([`super::bf16::pack_output_grad`]) and one
//!   broadcast word of each input channel (two adjacent pixels of [`super::bf16::pad_bf16`]'s
//!   plane, read at the tap's shift) feed up to 24 dot products.
//!
//! The instruction rounds each sum to nearest even and treats bfloat16 denormals as zero; the
//! product of two bfloat16 values is exact in f32. Contract: as [`super::conv`]; the sums are
//! taken in an order fixed by the shape, by one band, so the results do not depend on the
//! threads.

use std::arch::x86_64::{
    __m512, __m512bh, __m512i, _mm512_add_ps, _mm512_dpbf16_ps, _mm512_loadu_ps,
    _mm512_loadu_si512, _mm512_set1_epi32, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
};

use super::bf16::bf16;
use super::layout::Tile;

/// Floats in a vector (and channel or pixel pairs in an operand).
const LANES: usize = 16;
/// Output channels in a forward tile (the packed kernel's block).
const CHANNELS: usize = 8;
/// Pixel vectors in a forward tile.
const VECTORS: usize = 3;
/// Input channel pairs whose tile rows stay cached together, and whose products one sum takes
/// before it is added to the tile (32 channels).
const PAIR_RUN: usize = 16;

/// Whether this CPU has AVX512_BF16 (and AVX-512F), checked once, then cached by the standard
/// library, and `BRN_SIMD` allows AVX-512 ([`super::simd`]).
pub(super) fn available() -> bool {
    super::simd::Simd::Avx512.allowed()
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bf16")
}

/// Channel pairs per image in the input that [`products`] reads ([`super::bf16::pad_pairs`]).
pub(super) fn pairs(c_in: usize) -> usize {
    c_in.div_ceil(2)
}

/// The kernel `taps[tap][o][c]` (`[K_h·K_w][C_out][C_in]`) in bfloat16 channel pairs, as
/// [`products`] reads it: per block of [`CHANNELS`] output channels, per input channel pair,
/// per tap, the block's words (channel `2k` low, `2k + 1` high; zeros past `C_out` and
/// `C_in`).
pub(super) fn pack(taps: &[f32], taps_count: usize, c_out: usize, c_in: usize) -> Vec<u32> {
    let (blocks, pairs) = (c_out.div_ceil(CHANNELS), pairs(c_in));
    let mut packed = Vec::with_capacity(blocks * pairs * taps_count * CHANNELS);
    // One loop per index of the layout, outermost first (no division per word: this runs on
    // one thread before every convolution).
    for block in 0..blocks {
        for pair in 0..pairs {
            for tap in 0..taps_count {
                for o in block * CHANNELS..(block + 1) * CHANNELS {
                    let weight = |c: usize| {
                        (o < c_out && c < c_in).then(|| bf16(taps[(tap * c_out + o) * c_in + c]))
                    };
                    packed.push(
                        weight(2 * pair).unwrap_or(0) | weight(2 * pair + 1).unwrap_or(0) << 16,
                    );
                }
            }
        }
    }
    packed
}

/// A vector of 16 words as 32 bfloat16 values.
#[inline(always)]
fn as_pairs(words: __m512i) -> __m512bh {
    // SAFETY: both are 64 bytes of plain bits.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(words) }
}

/// One band's wide output, `wide[o][q] = bias[o] + Σ_c Σ_tap w[o, c, tap] · input[c,
/// shifts[tap] + q]` for `q < wide_len` (a multiple of 16) and every output channel, the
/// input and kernel in bfloat16.
///
/// # Safety
/// [`available`] has returned true; `wide` holds `c_out·wide_len` floats; `input` is
/// [`super::bf16::pad_pairs`]'s words (for [`pairs`]) from the band's first pixel of its
/// image's first pair and reaches `(pairs(c_in) − 1)·plane + max(shifts) + wide_len` words;
/// `packed` is [`pack`]'s for `shifts.len()` taps, `c_out` and `c_in`; `bias` has `c_out`
/// values.
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn products(
    wide: *mut f32,
    wide_len: usize,
    input: *const u32,
    plane: usize,
    shifts: &[usize],
    packed: &[u32],
    [c_out, c_in]: [usize; 2],
    bias: Option<&[f32]>,
) {
    debug_assert_eq!(wide_len % LANES, 0);
    let (blocks, pairs) = (c_out.div_ceil(CHANNELS), pairs(c_in));
    let mut init = vec![0f32; blocks * CHANNELS];
    if let Some(bias) = bias {
        init[..c_out].copy_from_slice(bias);
    }
    let mut q = 0;
    while q < wide_len {
        let vectors = ((wide_len - q) / LANES).min(VECTORS);
        let mut p0 = 0;
        while p0 < pairs {
            let p1 = (p0 + PAIR_RUN).min(pairs);
            for block in 0..blocks {
                let first = block * CHANNELS;
                let tile = Tile {
                    out: unsafe { wide.add(first * wide_len + q) },
                    wide_len,
                    channels: (c_out - first).min(CHANNELS),
                    plane,
                    shifts,
                    input: unsafe { input.add(p0 * plane + q) },
                    inputs: p1 - p0,
                    weights: packed[(block * pairs + p0) * shifts.len() * CHANNELS..].as_ptr(),
                    init: (p0 == 0).then(|| &init[first..][..CHANNELS]),
                };
                match vectors {
                    3 => unsafe { tile.run::<3>() },
                    2 => unsafe { tile.run::<2>() },
                    _ => unsafe { tile.run::<1>() },
                }
            }
            p0 = p1;
        }
        q += vectors * LANES;
    }
}

/// The forward tile: 8 output channels by `16·V` pixels, over a run of input channel pairs.
impl Tile<'_, u32> {
    /// `out (+)= Σ_pairs Σ_tap w · input` over the tile.
    ///
    /// # Safety
    /// As [`products`]; `out` holds the tile's values when `init` is `None`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    // acc[i][j]: pixel vector i, output channel j, as the registers are laid out.
    #[allow(clippy::needless_range_loop)]
    unsafe fn run<const V: usize>(&self) {
        let mut acc = [[_mm512_setzero_ps(); CHANNELS]; V];
        let mut w = self.weights;
        for p in 0..self.inputs {
            let x = unsafe { self.input.add(p * self.plane) };
            for &shift in self.shifts {
                let x = unsafe { x.add(shift) };
                let mut v = [as_pairs(unsafe { _mm512_loadu_si512(x.cast()) }); V];
                for (i, v) in v.iter_mut().enumerate().skip(1) {
                    *v = as_pairs(unsafe { _mm512_loadu_si512(x.add(i * LANES).cast()) });
                }
                for j in 0..CHANNELS {
                    let weight = as_pairs(_mm512_set1_epi32(unsafe { *w.add(j) } as i32));
                    for i in 0..V {
                        acc[i][j] = _mm512_dpbf16_ps(acc[i][j], v[i], weight);
                    }
                }
                w = unsafe { w.add(CHANNELS) };
            }
        }
        for j in 0..self.channels {
            // The first run adds its sum to the bias, the others to what the tile holds.
            let bias = self.init.map(|init| _mm512_set1_ps(init[j]));
            for (i, row) in acc.iter().enumerate() {
                let out = unsafe { self.out.add(j * self.wide_len + i * LANES) };
                let before = bias.unwrap_or_else(|| unsafe { _mm512_loadu_ps(out) });
                unsafe { _mm512_storeu_ps(out, _mm512_add_ps(before, row[j])) };
            }
        }
    }
}

/// Whether [`weight_products`] takes `c_out` output channels: whole vectors of 16
/// ([`weight_channels`] rounds a convolution's count up to one it takes).
pub(super) fn applies_to_weight_gradient(c_out: usize) -> bool {
    c_out.is_multiple_of(LANES)
}

/// The output channels [`weight_products`] computes for `c_out`: whole vectors of 16.
pub(super) fn weight_channels(c_out: usize) -> usize {
    c_out.next_multiple_of(LANES)
}

/// Input channels in a weight-gradient tile.
const WEIGHT_CHANNELS: usize = 12;

/// `sum[tap][c][o] += Σ_q x[c][shifts[tap] + q] · dy[o][q]` for `q < len`, from
/// [`super::bf16::pad_bf16`]'s `input` (from the band's first pixel of its image's channel 0,
/// planes `plane` apart) and [`super::bf16::pack_output_grad`]'s `dy_pairs`; the operands in
/// bfloat16, the sums f32. Each tile's sum over the band starts from zero and is then added
/// to `sum`.
///
/// # Safety
/// [`available`] has returned true; [`applies_to_weight_gradient`] holds for `c_out`; `len` is
/// even; `sum` holds `shifts.len()·c_in·c_out` floats, `dy_pairs` `len/2·c_out` words;
/// `input` reaches `(c_in − 1)·plane + max(shifts) + len` values.
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn weight_products(
    sum: &mut [f32],
    input: *const u16,
    plane: usize,
    dy_pairs: &[u32],
    len: usize,
    shifts: &[usize],
    [c_out, c_in]: [usize; 2],
) {
    debug_assert!(len.is_multiple_of(2) && applies_to_weight_gradient(c_out));
    debug_assert!(sum.len() >= shifts.len() * c_out * c_in && dy_pairs.len() >= c_out * len / 2);
    for (tap, &shift) in shifts.iter().enumerate() {
        let mut c0 = 0;
        while c0 < c_in {
            let channels = match c_in - c0 {
                left if left >= WEIGHT_CHANNELS => WEIGHT_CHANNELS,
                8..=11 => 8,
                4..=7 => 4,
                _ => 1,
            };
            let mut o0 = 0;
            while o0 < c_out {
                let vectors = if c_out - o0 >= 2 * LANES { 2 } else { 1 };
                let tile = WeightTile {
                    sum: sum[(tap * c_in + c0) * c_out + o0..].as_mut_ptr(),
                    c_out,
                    input: unsafe { input.add(c0 * plane + shift) },
                    plane,
                    dy_pairs: dy_pairs[o0..].as_ptr(),
                    pairs: len / 2,
                };
                match (channels, vectors) {
                    (WEIGHT_CHANNELS, 2) => unsafe { tile.run::<WEIGHT_CHANNELS, 2>() },
                    (WEIGHT_CHANNELS, _) => unsafe { tile.run::<WEIGHT_CHANNELS, 1>() },
                    (8, 2) => unsafe { tile.run::<8, 2>() },
                    (8, _) => unsafe { tile.run::<8, 1>() },
                    (4, 2) => unsafe { tile.run::<4, 2>() },
                    (4, _) => unsafe { tile.run::<4, 1>() },
                    (_, 2) => unsafe { tile.run::<1, 2>() },
                    _ => unsafe { tile.run::<1, 1>() },
                }
                o0 += vectors * LANES;
            }
            c0 += channels;
        }
    }
}

/// One weight-gradient tile: `C` input channels by `16·O` output channels of one tap, over a
/// band's pixel pairs.
struct WeightTile {
    /// `sum[c0][o0]` of the tap's block (rows `c_out` apart).
    sum: *mut f32,
    c_out: usize,
    /// Channel `c0` at the tap's shift from the band's first pixel (planes `plane` apart).
    input: *const u16,
    plane: usize,
    /// `dy_pairs[0][o0]` (pairs `c_out` words apart).
    dy_pairs: *const u32,
    /// Pixel pairs in the band.
    pairs: usize,
}

impl WeightTile {
    /// `sum[c][o] += Σ_k x[c][2k, 2k + 1] · dy[o][2k, 2k + 1]` over the tile.
    ///
    /// # Safety
    /// As [`weight_products`], for this tile's channels.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    #[allow(clippy::needless_range_loop)]
    unsafe fn run<const C: usize, const O: usize>(&self) {
        let mut acc = [[_mm512_setzero_ps(); O]; C];
        for k in 0..self.pairs {
            let grad = unsafe { self.dy_pairs.add(k * self.c_out) };
            let mut g = [as_pairs(unsafe { _mm512_loadu_si512(grad.cast()) }); O];
            for (o, g) in g.iter_mut().enumerate().skip(1) {
                *g = as_pairs(unsafe { _mm512_loadu_si512(grad.add(o * LANES).cast()) });
            }
            for c in 0..C {
                // Pixels 2k and 2k + 1 of channel c at the tap's shift, as one word.
                let at = unsafe { self.input.add(c * self.plane + 2 * k) };
                let word = unsafe { at.cast::<u32>().read_unaligned() };
                let x = as_pairs(_mm512_set1_epi32(word as i32));
                for o in 0..O {
                    acc[c][o] = _mm512_dpbf16_ps(acc[c][o], g[o], x);
                }
            }
        }
        for (c, row) in acc.iter().enumerate() {
            for (o, &value) in row.iter().enumerate() {
                let at = unsafe { self.sum.add(c * self.c_out + o * LANES) };
                let before: __m512 = unsafe { _mm512_loadu_ps(at) };
                unsafe { _mm512_storeu_ps(at, _mm512_add_ps(before, value)) };
            }
        }
    }
}
