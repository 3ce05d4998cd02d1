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
    Through::new(grad, outputs).masked()
}

/// A gradient through ReLUs before the mask is applied: [`relu_mask`]`(grad, outputs)`, read
/// piece by piece where it is needed, so that the passes that read a gradient anyway (a
/// convolution's backward pass: [`super::conv_backward`]) mask it on the way instead of after
/// a pass of its own.
#[derive(Clone, Copy)]
pub struct Through<'a> {
    grad: &'a [f32],
    outputs: &'a [&'a [f32]],
}

impl<'a> Through<'a> {
    /// `grad` through the ReLUs whose outputs were `outputs` (none: `grad` itself).
    ///
    /// # Panics
    /// If an output's length is not the gradient's (a caller's bug).
    pub fn new(grad: &'a [f32], outputs: &'a [&'a [f32]]) -> Self {
        for output in outputs {
            assert_eq!(output.len(), grad.len(), "relu_mask of different lengths");
        }
        Self { grad, outputs }
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.grad.len()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.grad.is_empty()
    }

    /// The gradient itself where no ReLU follows (nothing to mask).
    pub fn unmasked(&self) -> Option<&'a [f32]> {
        self.outputs.is_empty().then_some(self.grad)
    }

    /// The masked gradient, in one pass on every core ([`relu_mask`]).
    pub fn masked(&self) -> Vec<f32> {
        chunked(self.len(), |first, target| self.values(first, target))
    }

    /// Values `first..first + target.len()` of the masked gradient into `target`.
    pub fn values(&self, first: usize, target: &mut [MaybeUninit<f32>]) {
        let n = target.len();
        let grad = &self.grad[first..][..n];
        let at = |k: usize| &self.outputs[k][first..][..n];
        match self.outputs.len() {
            0 => copy_values(grad, target),
            1 => mask_values(grad, at(0), None, target),
            2 => mask_values(grad, at(0), Some(at(1)), target),
            count => {
                for (i, (t, &g)) in target.iter_mut().zip(grad).enumerate() {
                    t.write(pass(g, (0..count).any(|k| at(k)[i] <= 0.0)));
                }
            }
        }
    }
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

/// Running sums of a plane in [`plane_sum`]: enough independent f64 sums to fill the vector
/// units (a single running sum waits on each addition's latency: 5 % of a training step).
pub(super) const SUMS: usize = 32;

/// `total += Σ values` in f64, in an order fixed by the length: [`SUMS`] running sums
/// ([`running_sums`]), then added to each other in order ([`sum_of`]).
pub(super) fn plane_sum(values: &[f32], total: &mut f64) {
    let mut sums = [0f64; SUMS];
    running_sums(values, &mut sums);
    *total += sum_of(&sums);
}

simd_loop! {
    /// `sums[j] += values[j] + values[j + SUMS] + …`, in f64: [`SUMS`] independent running sums
    /// (a plane's, row after row, or [`plane_sum`]'s), value `i` in sum `i % SUMS`.
    pub(super) fn running_sums(values: &[f32], sums: &mut [f64; SUMS]) {
        let chunks = values.chunks_exact(SUMS);
        let tail = chunks.remainder();
        for chunk in chunks {
            for (sum, &v) in sums.iter_mut().zip(chunk) {
                *sum += v as f64;
            }
        }
        for (sum, &v) in sums.iter_mut().zip(tail) {
            *sum += v as f64;
        }
    }
}

/// [`running_sums`] added to each other, in order.
pub(super) fn sum_of(sums: &[f64; SUMS]) -> f64 {
    sums.iter().sum()
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
