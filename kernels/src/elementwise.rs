//! The element-wise steps around a convolution that the autodiff backend records as one node
//! with it (a ResBlock's residual add and ReLU, and the gradient through ReLUs), as one pass
//! over memory on every core (flex runs its own element-wise operations on one thread).
//!
//! Contract: f32 slices of one length (checked: a mismatch panics, as a caller's bug), any
//! layout (each value alone); chunks of [`CHUNK`] values in parallel, each value computed once,
//! so the result does not depend on the threads.

/// Values per parallel task: large enough that a task's overhead vanishes, small enough to
/// share a 64x64 batch's maps among the cores.
const CHUNK: usize = 1 << 14;

/// `out[i] = f(i-th chunk's inputs…)` computed chunk by chunk, in parallel with the `parallel`
/// feature: `f(first, target)` fills `target`, the values from index `first`.
fn chunked(len: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) -> Vec<f32> {
    let mut out = vec![0f32; len];
    super::parallel::for_each_chunk(&mut out, CHUNK, |i, target| f(i * CHUNK, target));
    out
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
        for ((t, a), b) in target.iter_mut().zip(a).zip(b) {
            *t = relu(a + b);
        }
    })
}

/// `grad` where every one of `outputs` is positive, zero elsewhere: the gradient through
/// ReLUs whose outputs were `outputs` (as burn's `relu_backward`, one output after another).
pub fn relu_mask(grad: &[f32], outputs: &[&[f32]]) -> Vec<f32> {
    for output in outputs {
        assert_eq!(output.len(), grad.len(), "relu_mask of different lengths");
    }
    chunked(grad.len(), |first, target| {
        target.copy_from_slice(&grad[first..][..target.len()]);
        for output in outputs {
            for (t, &o) in target.iter_mut().zip(&output[first..]) {
                if o <= 0.0 {
                    *t = 0.0;
                }
            }
        }
    })
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
        let masked = relu_mask(&a, &[&b, &m]);
        for i in 0..len {
            // A NaN output passes: only `o <= 0` cuts.
            let cuts = |o: f32| o <= 0.0;
            let passes = !cuts(b[i]) && !cuts(m[i]);
            assert_eq!(
                masked[i],
                if passes { a[i] } else { 0.0 },
                "relu_mask at {i}"
            );
        }
        assert_eq!(masked[5], if b[5] > 0.0 { a[5] } else { 0.0 });
    }
}
