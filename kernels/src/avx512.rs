//! The convolution's products (its forward and its input gradient, [`super::conv`]) as an
//! AVX-512 micro-kernel, for x86-64 CPUs with AVX-512F (detected at run time;
//! [`super::conv::Products`] picks it or the `gemm` crate).
//!
//! The `gemm` path calls one matrix product per kernel tap: `K_h·K_w` calls per band, each
//! loading and storing the band's whole output and packing its operands, with only 32 input
//! channels to sum in each (the ResBlocks'). Here a tile of the output, 48 pixels of the wide
//! output (three 16-float vectors, contiguous in the padded plane) by 8 output channels, stays
//! in 24 registers over every tap of a run of 32 input channels: per input channel and tap,
//! three unaligned loads of the shifted input and 8 broadcast weights feed 24 fused
//! multiply-adds. The run's input rows stay in the first-level cache while every block of 8
//! output channels reads them; the kernel is packed once per convolution
//! ([`super::layout::pack`], blocks of [`CHANNELS`]) so that a tile reads its weights in order.
//!
//! (The weight gradient stays on gemm, whose long sums over pixels it runs well: an AVX-512
//! version measured no faster.)
//!
//! Contract: as [`super::conv`] (its padded input, its wide layout, its `ROW_MULTIPLE`); each
//! output value is summed in an order fixed by the shape (runs of input channels, then channel,
//! then tap), by one band, so the results do not depend on the threads.

use super::layout::Tile;
use std::arch::x86_64::{
    _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
    _mm512_storeu_ps,
};

/// Floats in a vector.
const LANES: usize = 16;
/// Output channels in a forward tile (the packed kernel's block).
pub(super) const CHANNELS: usize = 8;
/// Pixel vectors in a forward tile.
const VECTORS: usize = 3;

/// Whether this CPU has AVX-512F (checked once, then cached by the standard library) and
/// `BRN_SIMD` allows it ([`super::simd`]).
pub(super) fn available() -> bool {
    super::simd::Simd::Avx512.allowed() && std::arch::is_x86_feature_detected!("avx512f")
}

/// One band's wide output, `wide[o][q] = bias[o] + Σ_c Σ_tap w[o, c, tap] · input[c·plane +
/// shifts[tap] + q]` for `q < wide_len` (a multiple of 16) and every output channel.
///
/// # Safety
/// The CPU has AVX-512F; `wide` holds `c_out·wide_len` floats; `input` reaches `(c_in −
/// 1)·plane + max(shifts) + wide_len` floats; `packed` is [`super::layout::pack`]'s (blocks of
/// [`CHANNELS`]) for `shifts.len()` taps, `c_out` and `c_in`; `bias` has `c_out` values.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn products(
    wide: *mut f32,
    wide_len: usize,
    input: *const f32,
    plane: usize,
    shifts: &[usize],
    packed: &[f32],
    [c_out, c_in]: [usize; 2],
    bias: Option<&[f32]>,
) {
    debug_assert_eq!(wide_len % LANES, 0);
    let blocks = c_out.div_ceil(CHANNELS);
    let mut init = vec![0f32; blocks * CHANNELS];
    if let Some(bias) = bias {
        init[..c_out].copy_from_slice(bias);
    }
    let mut q = 0;
    while q < wide_len {
        let vectors = ((wide_len - q) / LANES).min(VECTORS);
        // The tile's input rows of a run of input channels stay in the first-level cache
        // while every block of output channels reads them.
        let mut c0 = 0;
        while c0 < c_in {
            let c1 = (c0 + CHANNEL_RUN).min(c_in);
            for block in 0..blocks {
                let first = block * CHANNELS;
                let tile = Tile {
                    out: unsafe { wide.add(first * wide_len + q) },
                    wide_len,
                    channels: (c_out - first).min(CHANNELS),
                    plane,
                    shifts,
                    input: unsafe { input.add(c0 * plane + q) },
                    inputs: c1 - c0,
                    weights: packed[(block * c_in + c0) * shifts.len() * CHANNELS..].as_ptr(),
                    init: (c0 == 0).then(|| &init[first..][..CHANNELS]),
                };
                match vectors {
                    3 => unsafe { tile.run::<3>() },
                    2 => unsafe { tile.run::<2>() },
                    _ => unsafe { tile.run::<1>() },
                }
            }
            c0 = c1;
        }
        q += vectors * LANES;
    }
}

/// Input channels whose tile rows (3 rows of 4 cache lines each) stay cached together, and
/// whose products one sum takes before it is added to the tile.
const CHANNEL_RUN: usize = 16;

/// The AVX-512 tile: 8 output channels by `16·V` pixels.
impl Tile<'_, f32> {
    /// `out (+)= Σ_c Σ_tap w · input` over the tile.
    ///
    /// # Safety
    /// As [`products`]; `out` holds the tile's values when `init` is `None`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    // acc[i][j]: pixel vector i, output channel j, as the registers are laid out.
    #[allow(clippy::needless_range_loop)]
    unsafe fn run<const V: usize>(&self) {
        // Each run's sum starts from zero and is added to the tile at the end: sums of at
        // most 16 channels by K_h·K_w taps, added up run by run (as accurate as gemm's sums
        // per tap).
        let mut acc = [[_mm512_setzero_ps(); CHANNELS]; V];
        let mut w = self.weights;
        for c in 0..self.inputs {
            let x = unsafe { self.input.add(c * self.plane) };
            for &shift in self.shifts {
                let x = unsafe { x.add(shift) };
                let mut v = [_mm512_setzero_ps(); V];
                for (i, v) in v.iter_mut().enumerate() {
                    *v = unsafe { _mm512_loadu_ps(x.add(i * LANES)) };
                }
                for j in 0..CHANNELS {
                    let weight = _mm512_set1_ps(unsafe { *w.add(j) });
                    for i in 0..V {
                        acc[i][j] = _mm512_fmadd_ps(v[i], weight, acc[i][j]);
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
