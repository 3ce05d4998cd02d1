//! The convolution's operands in bfloat16, as the mixed-precision products read them (the
//! AMX tile unit, [`super::amx`], and the AVX512-BF16 dot products, [`super::avx512_bf16`]):
//! rounding to the nearest bfloat16, the padded input in channel pairs (one 32-bit word per
//! pixel holding two channels, the layout of both instruction sets' pair operands) or plain,
//! and a band's output gradient in pixel pairs for the weight gradient.

use std::mem::MaybeUninit;

use super::activation::simd_loop;
use super::elementwise::{running_sums, sum_of, Through, SUMS};
use super::layout::{padded_planes, padded_planes_with, source_planes, Shape, ROW_MULTIPLE};

/// `x` rounded to the nearest bfloat16 (ties to even), as the low 16 bits. (NaN may become
/// infinity; training has failed by then anyway.)
#[inline(always)]
pub(super) fn bf16(x: f32) -> u32 {
    let bits = x.to_bits();
    bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16
}

/// `values` rounded to bfloat16, as f32 (the tests' references).
#[cfg(test)]
pub(super) fn rounded(values: &[f32]) -> Vec<f32> {
    values
        .iter()
        .map(|&x| f32::from_bits(bf16(x) << 16))
        .collect()
}

/// The input as [`super::layout::pad`] pads it, in bfloat16 channel pairs: `[N, pairs,
/// H_p·W_p]` words (`pairs ≥ C_in/2`), channel `2k` in the low half of pair `k`'s words,
/// zeros for channels past `C_in`, then `pad`'s tail of zero words.
pub(super) fn pad_pairs(x: &[&[f32]], shape: Shape, pairs: usize) -> Vec<u32> {
    debug_assert!(2 * pairs >= shape.channels_in);
    let sources = source_planes(x, shape);
    let (c_in, width) = (shape.channels_in, shape.size[1]);
    let tail = shape.kernel[1] + ROW_MULTIPLE;
    padded_planes(shape.batch * pairs, shape, tail, 0, |p, y, target| {
        let (image, pair) = (p / pairs, p % pairs);
        let row = |c: usize| (c < c_in).then(|| &sources[image * c_in + c][y * width..][..width]);
        match row(2 * pair) {
            Some(low) => pair_row(low, row(2 * pair + 1), target),
            None => target.iter_mut().for_each(|t| {
                t.write(0);
            }),
        }
    })
}

/// A convolution's output gradient through the ReLUs after it, `[N, C, H, W]` with `C =
/// shape.channels_in` (the input of the input gradient's convolution, `shape` its transposed
/// shape), padded as [`pad_pairs`] pads an input, the mask applied on the way (no pass of its
/// own); and each channel's sum over the batch, the bias gradient (each plane in
/// [`SUMS`] f64 running sums row after row ([`running_sums`]), then the images in order: an
/// order fixed by the shape).
pub(super) fn pad_pairs_through(grad: Through, shape: Shape, pairs: usize) -> (Vec<u32>, Vec<f32>) {
    debug_assert!(2 * pairs >= shape.channels_in);
    let (c, [height, width]) = (shape.channels_in, shape.size);
    assert_eq!(
        grad.len(),
        shape.batch * c * height * width,
        "gradient of another shape"
    );
    let first =
        |image: usize, channel: usize, y: usize| ((image * c + channel) * height + y) * width;
    let tail = shape.kernel[1] + ROW_MULTIPLE;
    let fill =
        |p: usize, y: usize, target: &mut [MaybeUninit<u32>], sums: &mut [[f64; SUMS]; 2]| {
            let (image, pair) = (p / pairs, p % pairs);
            if 2 * pair >= c {
                return target.iter_mut().for_each(|t| {
                    t.write(0);
                });
            }
            with_rows(2 * width, |rows| {
                let (low, high) = rows.split_at_mut(width);
                grad.values(first(image, 2 * pair, y), as_uninit(low));
                running_sums(low, &mut sums[0]);
                let high = if 2 * pair + 1 < c {
                    grad.values(first(image, 2 * pair + 1, y), as_uninit(high));
                    running_sums(high, &mut sums[1]);
                    Some(&*high)
                } else {
                    None
                };
                pair_row(low, high, target);
            })
        };
    let (padded, sums) = padded_planes_with(shape.batch * pairs, shape, tail, 0, fill);
    let bias = (0..c)
        .map(|channel| {
            let sum = |image: usize| sum_of(&sums[image * pairs + channel / 2][channel % 2]);
            (0..shape.batch).map(sum).sum::<f64>() as f32
        })
        .collect();
    (padded, bias)
}

simd_loop! {
    /// `target[i]` = the low (`high` false) or high half of `words[i]`: one channel of a row of
    /// bfloat16 channel pairs.
    pub(super) fn half_row(words: &[u32], high: bool, target: &mut [MaybeUninit<u16>]) {
        let n = target.len();
        let words = &words[..n];
        let shift = if high { 16 } else { 0 };
        for i in 0..n {
            target[i].write((words[i] >> shift) as u16);
        }
    }
}

std::thread_local! {
    /// Each thread's rows of a masked gradient on their way to bfloat16.
    static ROWS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `f` on this thread's row buffer of `len` values (holding anything); `f` must not call it
/// again.
fn with_rows<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    ROWS.with(|rows| {
        let mut rows = rows.borrow_mut();
        if rows.len() < len {
            rows.resize(len, 0.0);
        }
        f(&mut rows[..len])
    })
}

/// Floats as slots to write floats into.
fn as_uninit(values: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout; what is written through it is an `f32`,
    // so the values stay initialised.
    unsafe { &mut *(values as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

simd_loop! {
    /// `target[i] = bf16(low[i]) | bf16(high[i]) << 16` (the high half zero without `high`).
    fn pair_row(low: &[f32], high: Option<&[f32]>, target: &mut [MaybeUninit<u32>]) {
        let n = target.len();
        let low = &low[..n];
        match high {
            Some(high) => {
                let high = &high[..n];
                for i in 0..n {
                    target[i].write(bf16(low[i]) | bf16(high[i]) << 16);
                }
            }
            None => {
                for i in 0..n {
                    target[i].write(bf16(low[i]));
                }
            }
        }
    }
}

simd_loop! {
    /// `target[i] = bf16(values[i])`.
    pub(super) fn bf16_row(values: &[f32], target: &mut [MaybeUninit<u16>]) {
        let n = target.len();
        let values = &values[..n];
        for i in 0..n {
            target[i].write(bf16(values[i]) as u16);
        }
    }
}

/// Pixels that one weight-gradient product sums (16 pairs: an AMX tile), a band's sums
/// running to a multiple of it.
pub(super) const WEIGHT_PIXELS: usize = 32;

/// The input as [`super::layout::pad`] pads it, in bfloat16 (`[N, C_in, H_p·W_p]`), then `pad`'s
/// tail and [`WEIGHT_PIXELS`] more zeros (a band's sums run to a multiple of 32 pixels).
pub(super) fn pad_bf16(x: &[f32], shape: Shape) -> Vec<u16> {
    let sources = source_planes(&[x], shape);
    let width = shape.size[1];
    let tail = shape.kernel[1] + ROW_MULTIPLE + WEIGHT_PIXELS;
    padded_planes(sources.len(), shape, tail, 0, |p, y, target| {
        bf16_row(&sources[p][y * width..][..width], target)
    })
}

/// One band's output gradient as the weight gradients' products read it: per pair of wide pixels
/// `(2k, 2k + 1)` (`2k < len`, a multiple of 32), per output channel, one word of the two in
/// bfloat16 (pixel `2k` low): `pairs[k][o]`. `band(o, target)` writes channel `o`'s band in
/// bfloat16, in the wide layout (`rows` rows `W_p` apart, zeros past `W_out`); zeros past the
/// rows. `wide` is scratch (`c_out·len/2` words, as `c_out·len` halves).
pub(super) fn pack_output_grad(
    pairs: &mut [u32],
    wide: &mut Vec<MaybeUninit<u32>>,
    len: usize,
    [c_out, rows, padded_w]: [usize; 3],
    band: impl Fn(usize, &mut [MaybeUninit<u16>]),
) {
    wide.resize(c_out * len / 2, MaybeUninit::new(0));
    // SAFETY: the words' memory as twice as many halves (aligned for both).
    let halves: &mut [MaybeUninit<u16>] = unsafe {
        std::slice::from_raw_parts_mut(wide.as_mut_ptr() as *mut MaybeUninit<u16>, c_out * len)
    };
    for (o, channel) in halves.chunks_exact_mut(len).enumerate() {
        let (rows, rest) = channel.split_at_mut(rows * padded_w);
        band(o, rows);
        rest.iter_mut().for_each(|v| {
            v.write(0);
        });
    }
    // SAFETY: every half of `wide` was written above (each channel's band by `band`, the rest
    // to `len`); two halves read as a word (x86 is little-endian: the even pixel is the low
    // half).
    let words: &[u32] =
        unsafe { std::slice::from_raw_parts(wide.as_ptr() as *const u32, c_out * len / 2) };
    transpose(words, len / 2, c_out, pairs);
}

/// `pairs[k][o] = words[o][k]` for `k < half` (a multiple of 16) and `o < c_out`: blocks of 16
/// channels by 16 pairs turned in AVX-512 registers where the CPU has AVX-512F (every CPU with
/// bfloat16 products has), the channels past a multiple of 16 one by one, in blocks of 16 pairs
/// that stay in the first-level cache.
fn transpose(words: &[u32], half: usize, c_out: usize, pairs: &mut [u32]) {
    debug_assert!(
        half.is_multiple_of(16) && words.len() >= c_out * half && pairs.len() >= half * c_out
    );
    let whole = if super::avx512::available() {
        // SAFETY: the CPU has AVX-512F; the slices hold what the loads and stores reach
        // (checked above).
        unsafe { transpose_blocks(words, half, c_out, pairs) };
        c_out / 16 * 16
    } else {
        0
    };
    for k0 in (0..half).step_by(16) {
        for o in whole..c_out {
            for (j, &w) in words[o * half + k0..][..16].iter().enumerate() {
                pairs[(k0 + j) * c_out + o] = w;
            }
        }
    }
}

/// [`transpose`] of the first `c_out / 16` blocks of 16 channels, each 16x16 block of words
/// loaded as 16 vectors, turned in four rounds of shuffles and stored as 16 vectors.
///
/// # Safety
/// The CPU has AVX-512F; `words` holds `c_out·half` words, `pairs` `half·c_out`; `half` is a
/// multiple of 16.
#[target_feature(enable = "avx512f")]
unsafe fn transpose_blocks(words: &[u32], half: usize, c_out: usize, pairs: &mut [u32]) {
    use std::arch::x86_64::{
        _mm512_loadu_si512, _mm512_setzero_si512, _mm512_shuffle_i32x4, _mm512_storeu_si512,
        _mm512_unpackhi_epi32, _mm512_unpackhi_epi64, _mm512_unpacklo_epi32, _mm512_unpacklo_epi64,
    };
    for o0 in (0..c_out / 16 * 16).step_by(16) {
        for k0 in (0..half).step_by(16) {
            // SAFETY (the loads and stores): rows o0..o0 + 16 of `words` from k0, 16 words
            // each, and rows k0..k0 + 16 of `pairs` from o0, within the slices (see above).
            // (Plain loops: a closure would not be compiled with this function's features.)
            let mut r = [_mm512_setzero_si512(); 16];
            for (i, row) in r.iter_mut().enumerate() {
                *row =
                    unsafe { _mm512_loadu_si512(words.as_ptr().add((o0 + i) * half + k0).cast()) };
            }
            // Per 128-bit lane: t[2i] = (r[2i][0], r[2i+1][0], r[2i][1], r[2i+1][1]), t[2i+1]
            // the same of elements 2 and 3.
            let mut t = [_mm512_setzero_si512(); 16];
            for i in (0..16).step_by(2) {
                t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
                t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
            }
            // u[g + j], lane L: element 4L + j of rows g..g + 4.
            let mut u = [_mm512_setzero_si512(); 16];
            for g in (0..16).step_by(4) {
                u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
                u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
                u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
                u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
            }
            for j in 0..4 {
                // Lanes (0, 2) and (1, 3) of rows 0–7 and of rows 8–15, then element 4L + j of
                // all 16 rows: v_even lanes 0, 2 → L = 0, 2; v_odd → L = 1, 3.
                let v_even = _mm512_shuffle_i32x4::<0b10_00_10_00>(u[j], u[4 + j]);
                let v_odd = _mm512_shuffle_i32x4::<0b11_01_11_01>(u[j], u[4 + j]);
                let w_even = _mm512_shuffle_i32x4::<0b10_00_10_00>(u[8 + j], u[12 + j]);
                let w_odd = _mm512_shuffle_i32x4::<0b11_01_11_01>(u[8 + j], u[12 + j]);
                let columns = [
                    (0, _mm512_shuffle_i32x4::<0b10_00_10_00>(v_even, w_even)),
                    (1, _mm512_shuffle_i32x4::<0b10_00_10_00>(v_odd, w_odd)),
                    (2, _mm512_shuffle_i32x4::<0b11_01_11_01>(v_even, w_even)),
                    (3, _mm512_shuffle_i32x4::<0b11_01_11_01>(v_odd, w_odd)),
                ];
                for (lane, column) in columns {
                    let k = k0 + 4 * lane + j;
                    unsafe {
                        _mm512_storeu_si512(pairs.as_mut_ptr().add(k * c_out + o0).cast(), column)
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked transpose (in AVX-512 registers where the CPU has AVX-512F) against the
    /// definition, word by word: channel counts below, at and past multiples of 16, one and
    /// several blocks of pairs; every word distinct, so a misplaced one shows.
    #[test]
    fn the_transpose_puts_every_word_in_its_place() {
        for c_out in [5, 16, 32, 35, 128] {
            for half in [16, 48] {
                let words: Vec<u32> = (0..(c_out * half) as u32).map(|i| i * 7 + 1).collect();
                let mut pairs = vec![0u32; half * c_out];
                transpose(&words, half, c_out, &mut pairs);
                for k in 0..half {
                    for o in 0..c_out {
                        assert_eq!(
                            pairs[k * c_out + o],
                            words[o * half + k],
                            "c_out {c_out}, half {half}: pair {k}, channel {o}"
                        );
                    }
                }
            }
        }
    }
}
