//! BRN's CPU kernels (the `model` crate's flex adapter runs them): plain `f32` slices in,
//! `Vec<f32>` out, no burn types.
//!
//! Shared contract, each file adding its own:
//! - **layout**: row-major NCHW maps, `[C_out, C_in, K_h, K_w]` kernels, f32;
//! - **padding**: zeros, symmetric, at most the kernel's reach (`layout::Shape`);
//! - **threading**: independent pieces (bands of rows, planes, chunks) through [`parallel`],
//!   the one switch between every core (rayon, the `parallel` feature) and one thread;
//! - **determinism**: every sum is taken in an order fixed by the shape alone, so results are
//!   the same bits at any thread count (a resumed training run repeats an uninterrupted one);
//! - **instruction sets**: everything runs on any CPU (the `gemm` crate picks its own SIMD);
//!   where the CPU has AVX-512F, or else AVX2 and FMA, the convolution's products ([`avx512`],
//!   [`narrow`]) and the element-wise loops ([`activation::simd_loop`]) take code for it chosen
//!   at run time ([`simd`]: `BRN_SIMD` caps the choice, to run another CPU kind's paths). The
//!   paths sum in different orders, so their results differ in the last bits (a run resumed on
//!   a CPU of another kind continues, but not bit for bit); the tests check each on a CPU that
//!   has it;
//! - **mixed precision** (training only, when the caller passes `products::Precision::Mixed`): where
//!   the CPU has AMX ([`amx`]) or AVX512_BF16 ([`avx512_bf16`]), the convolution's products
//!   and both its gradients round their operands to bfloat16 ([`bf16`]), every sum f32;
//!   inference never does. [`products`] is where the kinds of products are chosen;
//! - **limits**: sizes that fit in memory as `usize` indices; callers (the flex adapter) check
//!   shapes and types before calling and fall back to burn's operations otherwise.

#![warn(missing_docs)]

pub mod activation;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_bf16;
#[cfg(target_arch = "x86_64")]
mod bf16;
pub mod conv;
pub mod conv_backward;
pub mod conv_gradient;
pub mod elementwise;
mod gemm;
#[cfg(any(
    test,
    target_arch = "x86_64",
    all(target_arch = "wasm32", target_feature = "simd128")
))]
mod lanes;
pub mod layout;
pub mod lstm;
#[cfg(any(
    test,
    target_arch = "x86_64",
    all(target_arch = "wasm32", target_feature = "simd128")
))]
mod narrow;
pub mod parallel;
pub mod products;
pub mod simd;

pub use products::Precision;
pub use simd::Simd;

/// What follows a convolution in the model, done in the same pass: in the kernels with the
/// shortcut as a slice (`model` names it with the shortcut as a tensor).
#[derive(Clone, Copy, Debug)]
pub enum After<T> {
    /// Nothing: `y`.
    Nothing,
    /// `relu(y)`.
    Relu,
    /// `relu(relu(y) + shortcut)`: the end of a ResBlock, `shortcut` shaped as the output.
    ReluAdd(T),
}

impl<T> After<T> {
    /// The same step with its shortcut mapped by `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> After<U> {
        match self {
            After::Nothing => After::Nothing,
            After::Relu => After::Relu,
            After::ReluAdd(shortcut) => After::ReluAdd(f(shortcut)),
        }
    }

    /// The same step borrowing its shortcut.
    pub fn as_ref(&self) -> After<&T> {
        match self {
            After::Nothing => After::Nothing,
            After::Relu => After::Relu,
            After::ReluAdd(shortcut) => After::ReluAdd(shortcut),
        }
    }
}

#[cfg(test)]
/// The largest absolute difference of `ours` from `reference` (results of the same length),
/// taken in f64: against a reference in f32 or in f64.
pub(crate) fn worst<R: Copy + Into<f64>>(ours: &[f32], reference: &[R]) -> f64 {
    assert_eq!(ours.len(), reference.len(), "results of different lengths");
    ours.iter()
        .zip(reference)
        .map(|(&a, &b)| (a as f64 - b.into()).abs())
        .fold(0f64, f64::max)
}

#[cfg(test)]
/// Pseudo-random values in [-1, 1).
pub(crate) fn values(count: usize, seed: u64) -> Vec<f32> {
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
