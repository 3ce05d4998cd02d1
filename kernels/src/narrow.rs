//! The convolution's products (its forward and its input gradient, [`super::conv`]) as a
//! micro-kernel for narrow vector units, 16 registers of 4 or 8 floats: the page's CPU path on
//! WebAssembly's 128-bit SIMD ([`super::lanes::Simd128`]), and x86-64 CPUs with AVX2 and FMA
//! but not AVX-512 ([`super::lanes::Avx2`], through [`products_avx2`]);
//! [`super::products::Products`] picks it.
//!
//! The same tiling as [`super::avx512`]'s, sized for 16 vector registers (what a browser's
//! compiler has on x86-64, one of them its scratch; what AVX2 has): a tile of the wide output,
//! two vectors of pixels (8 or 16, contiguous in the padded plane) by 4 output channels, stays
//! in 8 registers over every tap of a run of input channels; per input channel and tap, two
//! unaligned loads of the shifted input and 4 broadcast weights feed 8 multiply-adds. The
//! `gemm` crate (which has 128-bit wasm and AVX2 kernels too) runs one matrix product per tap
//! instead, loading and storing the band's whole output and packing its operands each time,
//! with 32 input channels to sum. On AVX2 (a Zen 4 capped by `BRN_SIMD=avx2`, one thread, 256²)
//! this tile sums 28–41 GMAC/s; a 3-vector tile (12 sums, all 16 registers) 20, its sums
//! spilled to memory.
//!
//! Written once against [`Lanes`], so that its tests run it on any CPU with
//! [`super::lanes::Portable`] (the same sums in the same order), and on AVX2 where the CPU has it.
//!
//! Contract: as [`super::conv`] (its padded input, its wide layout, its `ROW_MULTIPLE`); each
//! output value is summed in an order fixed by the shape (runs of input channels, then channel,
//! then tap), by one band.

use super::lanes::Lanes;
use super::layout::Tile;

/// Output channels in a tile (the packed kernel's block, [`super::layout::pack`]).
pub(super) const CHANNELS: usize = 4;
/// Pixel vectors in a tile.
const VECTORS: usize = 2;
/// Input channels summed in a tile's registers before the sums are added to the tile (and
/// whose tile rows stay in the first-level cache while every block of output channels reads
/// them).
const CHANNEL_RUN: usize = 16;

/// One band's wide output, `wide[o][q] = bias[o] + Σ_c Σ_tap w[o, c, tap] · input[c·plane +
/// shifts[tap] + q]` for `q < wide_len` (a multiple of two vectors) and every output channel.
///
/// # Safety
/// `wide` holds `c_out·wide_len` floats; `input` reaches `(c_in − 1)·plane + max(shifts) +
/// wide_len` floats; `packed` is [`super::layout::pack`]'s (blocks of [`CHANNELS`]) for
/// `shifts.len()` taps, `c_out` and `c_in`; `bias` has `c_out` values.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(
    all(target_arch = "wasm32", feature = "relaxed-simd"),
    target_feature(enable = "relaxed-simd")
)]
// Inlined into `products_avx2`, whose target features its vectors' instructions need.
#[cfg_attr(target_arch = "x86_64", inline(always))]
pub(super) unsafe fn products<L: Lanes>(
    wide: *mut f32,
    wide_len: usize,
    input: *const f32,
    plane: usize,
    shifts: &[usize],
    packed: &[f32],
    [c_out, c_in]: [usize; 2],
    bias: Option<&[f32]>,
) {
    let step = VECTORS * L::LANES;
    debug_assert_eq!(wide_len % step, 0);
    let blocks = c_out.div_ceil(CHANNELS);
    let mut init = vec![0f32; blocks * CHANNELS];
    if let Some(bias) = bias {
        init[..c_out].copy_from_slice(bias);
    }
    let run = |q: usize| {
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
                unsafe { tile.run_on::<L>() };
            }
            c0 = c1;
        }
    };
    // The wide output's steps (`q = k·step`, row `q / W_p`, column `q % W_p`) strip by strip
    // of columns, each step once: the same sums as in order, each by the same tile.
    let steps = wide_len / step;
    match row_of(shifts) {
        Some(row) if row > STRIP => {
            let mut x0 = 0;
            while x0 < row {
                let x1 = (x0 + STRIP).min(row);
                let mut r = 0;
                while r * row < wide_len {
                    let lo = (r * row + x0).div_ceil(step);
                    let hi = (r * row + x1).div_ceil(step).min(steps);
                    for k in lo..hi {
                        run(k * step);
                    }
                    r += 1;
                }
                x0 = x1;
            }
        }
        _ => {
            for k in 0..steps {
                run(k * step);
            }
        }
    }
}

/// Columns of a strip: [`products`] runs a band's tiles strip by strip, each strip's rows in
/// turn, so that the input rows that the next output row reads again are still in cache (a
/// row of 512 pixels in 96 channels is 200 KB). Measured with the bands' own padded windows
/// (`conv::band`), in the page (512x512, T = 4, one worker): README, issue 36.
const STRIP: usize = 128;

/// The row stride of a kernel's shifts ([`super::layout::Shape::shifts`]: `a·W_p + b` for tap
/// `(a, b)`): the first shift that is not its own index; `None` for a kernel of one row (or
/// rows no wider than the kernel, which have no strips to make).
fn row_of(shifts: &[usize]) -> Option<usize> {
    let (_, &row) = shifts.iter().enumerate().find(|(i, &shift)| shift != *i)?;
    Some(row)
}

/// [`products`] on AVX2's 8-float vectors, with fused multiply-adds.
///
/// # Safety
/// The CPU has AVX2 and FMA; as [`products`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn products_avx2(
    wide: *mut f32,
    wide_len: usize,
    input: *const f32,
    plane: usize,
    shifts: &[usize],
    packed: &[f32],
    channels: [usize; 2],
    bias: Option<&[f32]>,
) {
    // SAFETY: the caller's promise.
    unsafe {
        products::<super::lanes::Avx2>(wide, wide_len, input, plane, shifts, packed, channels, bias)
    }
}

/// The narrow tile: 4 output channels by two vectors of pixels.
impl Tile<'_, f32> {
    /// `out (+)= Σ_c Σ_tap w · input` over the tile.
    ///
    /// # Safety
    /// As [`products`]; `out` holds the tile's values when `init` is `None`.
    #[inline(always)]
    // acc[i][j]: pixel vector i, output channel j, as the registers are laid out.
    #[allow(clippy::needless_range_loop)]
    unsafe fn run_on<L: Lanes>(&self) {
        // Each run's sum starts from zero and is added to the tile at the end (as the AVX-512
        // tile does).
        let mut acc = [[L::zero(); CHANNELS]; VECTORS];
        let mut w = self.weights;
        for c in 0..self.inputs {
            let x = unsafe { self.input.add(c * self.plane) };
            for &shift in self.shifts {
                let x = unsafe { x.add(shift) };
                let v: [L; VECTORS] =
                    std::array::from_fn(|i| unsafe { L::load(x.add(i * L::LANES)) });
                for j in 0..CHANNELS {
                    let weight = L::splat(unsafe { *w.add(j) });
                    for i in 0..VECTORS {
                        acc[i][j] = acc[i][j].mul_add(v[i], weight);
                    }
                }
                w = unsafe { w.add(CHANNELS) };
            }
        }
        for j in 0..self.channels {
            // The first run adds its sum to the bias, the others to what the tile holds.
            let bias = self.init.map(|init| L::splat(init[j]));
            for (i, row) in acc.iter().enumerate() {
                let out = unsafe { self.out.add(j * self.wide_len + i * L::LANES) };
                let before = bias.unwrap_or_else(|| unsafe { L::load(out) });
                unsafe { before.add(row[j]).store(out) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row stride read from a padded plane's shifts (3x3 and 3x2 kernels in a plane 10
    /// wide); a kernel of one row has none.
    #[test]
    fn the_row_stride_is_read_from_the_shifts() {
        let shifts = |rows: usize, cols: usize, width: usize| -> Vec<usize> {
            (0..rows)
                .flat_map(|a| (0..cols).map(move |b| a * width + b))
                .collect()
        };
        assert_eq!(row_of(&shifts(3, 3, 10)), Some(10));
        assert_eq!(row_of(&shifts(3, 2, 10)), Some(10));
        assert_eq!(row_of(&shifts(1, 3, 10)), None);
    }
}
