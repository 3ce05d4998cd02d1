//! The element-wise steps around a convolution that the autodiff backend records as one node
//! with it (a ResBlock's residual add and ReLU, and the gradient through ReLUs), as one pass
//! over memory on every core (flex runs its own element-wise operations on one thread).
//!
//! Contract: f32 slices of one length (checked: a mismatch panics, as a caller's bug), any
//! layout (each value alone); chunks of [`CHUNK`] values in parallel, each value computed once,
//! so the result does not depend on the threads.

use std::mem::MaybeUninit;

use super::activation::simd_loop;

/// Values per parallel task: large enough that a task's overhead vanishes, small enough to
/// share a 64x64 batch's maps among the cores.
const CHUNK: usize = 1 << 14;

/// `len` values computed in chunks of [`CHUNK`], in parallel with the `parallel` feature:
/// `f(first, target)` writes every value of `target`, the values from index `first` (the
/// output is never filled with zeros first: a pass over memory less).
fn chunked(len: usize, f: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send) -> Vec<f32> {
    super::parallel::collect_chunks(len, CHUNK, |i, target| f(i * CHUNK, target))
}

/// `max(v, 0)`, and 0 for a NaN (as `f32::max(v, 0.0)`), written as a comparison: in
/// WebAssembly `f32::max` is a call to libm's `fmaxf` (wasm's own `max` lets a NaN through),
/// which took 7 % of the page's derain as the convolution's epilogue; the comparison is one
/// `max` instruction there and on x86-64, and vectorises.
#[inline(always)]
pub fn relu(v: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        0.0
    }
}

/// `relu(a + b)`, `a` and `b` of the same length.
pub fn relu_add(a: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "relu_add of different lengths");
    chunked(a.len(), |first, target| {
        let (a, b) = (&a[first..][..target.len()], &b[first..][..target.len()]);
        relu_add_values(a, b, target)
    })
}

simd_loop! {
    /// `target[i] = relu(a[i] + b[i])`.
    fn relu_add_values(a: &[f32], b: &[f32], target: &mut [MaybeUninit<f32>]) {
        for ((t, a), b) in target.iter_mut().zip(a).zip(b) {
            t.write(relu(a + b));
        }
    }
}

/// `grad` where every one of `outputs` is positive, zero elsewhere: the gradient through
/// ReLUs whose outputs were `outputs` (as burn's `relu_backward`, one output after another:
/// only `o <= 0` cuts, so a NaN output lets the gradient pass). One pass: each value is
/// written once, from the gradient and the outputs at its place.
pub fn relu_mask(grad: &[f32], outputs: &[&[f32]]) -> Vec<f32> {
    for output in outputs {
        assert_eq!(output.len(), grad.len(), "relu_mask of different lengths");
    }
    chunked(grad.len(), |first, target| {
        let n = target.len();
        let grad = &grad[first..][..n];
        let at = |k: usize| &outputs[k][first..][..n];
        match outputs.len() {
            1 => mask_values(grad, at(0), None, target),
            2 => mask_values(grad, at(0), Some(at(1)), target),
            count => {
                for (i, (t, &g)) in target.iter_mut().zip(grad).enumerate() {
                    t.write(pass(g, (0..count).any(|k| at(k)[i] <= 0.0)));
                }
            }
        }
    })
}

/// `g`, or 0 where `cut`.
#[inline(always)]
fn pass(g: f32, cut: bool) -> f32 {
    if cut {
        0.0
    } else {
        g
    }
}

simd_loop! {
    /// `target[i] = grad[i]` where `o[i] > 0` (and `p[i] > 0` with `p`), else 0 (a NaN output
    /// passes, as [`relu_mask`] says).
    fn mask_values(grad: &[f32], o: &[f32], p: Option<&[f32]>, target: &mut [MaybeUninit<f32>]) {
        match p {
            None => {
                for ((t, &g), &o) in target.iter_mut().zip(grad).zip(o) {
                    t.write(pass(g, o <= 0.0));
                }
            }
            Some(p) => {
                for (((t, &g), &o), &p) in target.iter_mut().zip(grad).zip(o).zip(p) {
                    t.write(pass(g, o <= 0.0 || p <= 0.0));
                }
            }
        }
    }
}

/// Channels `start..start + channels` of `x`, `[N, C, plane]`, as `[N, channels, plane]` of
/// their own (the images copied in parallel).
pub fn channels_of(
    x: &[f32],
    [batch, c, plane]: [usize; 3],
    start: usize,
    channels: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), batch * c * plane, "channels_of of another shape");
    assert!(start + channels <= c, "channels_of past the last channel");
    let block = channels * plane;
    super::parallel::collect_chunks(batch * block, block, |n, target| {
        copy_values(&x[(n * c + start) * plane..][..block], target)
    })
}

/// `cat(parts, 1)`: the parts, `[N, C_i, plane]` each, as one `[N, Σ C_i, plane]`, copied
/// plane by plane in parallel (flex's `cat` copies on one thread while the other cores wait).
///
/// # Panics
/// If a part's length is not `batch·C_i·plane` (a caller's bug).
pub fn cat_channels(parts: &[(&[f32], usize)], batch: usize, plane: usize) -> Vec<f32> {
    for (part, c) in parts {
        assert_eq!(
            part.len(),
            batch * c * plane,
            "cat_channels of another shape"
        );
    }
    // Each output channel's part and its channel there.
    let sources: Vec<(usize, usize)> = parts
        .iter()
        .enumerate()
        .flat_map(|(i, &(_, c))| (0..c).map(move |k| (i, k)))
        .collect();
    let channels = sources.len();
    super::parallel::collect_chunks(batch * channels * plane, plane, |j, target| {
        let (n, (i, k)) = (j / channels, sources[j % channels]);
        let (part, c) = parts[i];
        copy_values(&part[(n * c + k) * plane..][..plane], target)
    })
}

simd_loop! {
    /// `target[i] = source[i]`.
    pub(super) fn copy_values(source: &[f32], target: &mut [MaybeUninit<f32>]) {
        for (t, &v) in target.iter_mut().zip(source) {
            t.write(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `relu` against `f32::max(v, 0.0)`, the definition it replaces, on signs, zeros,
    /// infinities, the smallest subnormal and a NaN (both give 0 for it).
    #[test]
    fn relu_is_max_with_zero() {
        for v in [
            1.5,
            -1.5,
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::from_bits(1),
            f32::NAN,
        ] {
            assert_eq!(relu(v), v.max(0.0), "relu({v})");
        }
    }

    /// Against the definitions, on more values than one chunk (the last one short), with
    /// zeros, negatives and a NaN in the masks (burn's `relu_backward` lets a NaN output pass).
    #[test]
    fn one_pass_is_the_definition() {
        let len = 3 * CHUNK + 17;
        let value =
            |i: usize, seed: usize| ((i * 7919 + seed * 104729) % 2001) as f32 / 1000.0 - 1.0;
        let a: Vec<f32> = (0..len).map(|i| value(i, 1)).collect();
        let b: Vec<f32> = (0..len).map(|i| value(i, 2)).collect();
        let mut m: Vec<f32> = (0..len).map(|i| value(i, 3)).collect();
        m[5] = f32::NAN;
        m[6] = 0.0;
        let sum = relu_add(&a, &b);
        for i in 0..len {
            let expected = if a[i] + b[i] > 0.0 { a[i] + b[i] } else { 0.0 };
            assert_eq!(sum[i], expected, "relu_add at {i}");
        }
        // No output, one, two and three (each count has its own loop).
        let sets: [&[&[f32]]; 4] = [&[], &[&b], &[&b, &m], &[&b, &m, &a]];
        for outputs in sets {
            let masked = relu_mask(&a, outputs);
            for i in 0..len {
                // A NaN output passes: only `o <= 0` cuts.
                let passes = outputs.iter().all(|o| o[i] > 0.0 || o[i].is_nan());
                assert_eq!(
                    masked[i],
                    if passes { a[i] } else { 0.0 },
                    "relu_mask of {} outputs at {i}",
                    outputs.len()
                );
            }
        }
        let masked = relu_mask(&a, &[&b, &m]);
        assert_eq!(masked[5], if b[5] > 0.0 { a[5] } else { 0.0 });
    }

    /// Against slicing by hand: the middle channels of a batch, the first and the last, and
    /// none at all.
    #[test]
    fn channels_of_is_the_slice() {
        let (batch, c, plane) = (3, 5, 7);
        let x: Vec<f32> = (0..batch * c * plane).map(|i| i as f32).collect();
        for (start, channels) in [(1, 3), (0, 1), (4, 1), (0, 5), (2, 0)] {
            let got = channels_of(&x, [batch, c, plane], start, channels);
            let mut want = Vec::new();
            for n in 0..batch {
                want.extend_from_slice(
                    &x[(n * c + start) * plane..(n * c + start + channels) * plane],
                );
            }
            assert_eq!(got, want, "channels {start}..{}", start + channels);
        }
    }

    /// `cat_channels` against the concatenation built image by image with `extend`, for two
    /// and three parts, a part of no channels, and one part.
    #[test]
    fn cat_channels_is_the_concatenation() {
        let (batch, plane) = (3, 7);
        let part = |c: usize, seed: usize| -> Vec<f32> {
            (0..batch * c * plane)
                .map(|i| (i * 31 + seed) as f32)
                .collect()
        };
        for channels in [vec![2, 3], vec![1, 0, 4], vec![5], vec![3, 3, 3]] {
            let values: Vec<Vec<f32>> = channels
                .iter()
                .enumerate()
                .map(|(i, &c)| part(c, i))
                .collect();
            let parts: Vec<(&[f32], usize)> = values
                .iter()
                .zip(&channels)
                .map(|(v, &c)| (v.as_slice(), c))
                .collect();
            let mut want = Vec::new();
            for n in 0..batch {
                for (v, &c) in values.iter().zip(&channels) {
                    want.extend_from_slice(&v[n * c * plane..(n + 1) * c * plane]);
                }
            }
            assert_eq!(
                cat_channels(&parts, batch, plane),
                want,
                "channels {channels:?}"
            );
        }
    }
}
