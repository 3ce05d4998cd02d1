//! The LSTM's logistic function and tanh, written so that a loop over a plane compiles to
//! vector code (no call into the C library's scalar `expf`/`tanhf`, no branch), and
//! [`simd_loop`] to run such a loop compiled for AVX-512 where the CPU has it.
//!
//! Contract: for finite inputs, within 2e-7 (absolute) of the exact values; `exp` is Cephes'
//! `expf` (range reduction by `ln 2` in two parts, a degree-6 polynomial), `tanh` Cephes'
//! small-argument polynomial below 0.625 and `1 − 2 / (e^{2|x|} + 1)` above; the result of
//! each call depends only on its input (no threads, no state).

/// `e^x`, the input clamped to `[−87.3, 88.3]` (so `2^n` stays a normal float).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5·2^23: adding it rounds to an integer, kept in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let exponent = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    // x − n·ln 2, with ln 2 in two parts so that the product's rounding does not show.
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let z = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * z + r + 1.0;
    y * f32::from_bits(((exponent + 127) as u32) << 23)
}

/// The logistic function `σ(x) = 1 / (1 + e^−x)`.
#[inline(always)]
pub fn logistic(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh(x)`.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let z = x * x;
    let small =
        ((((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z
            - 3.333_328e-1)
            * z
            * x
            + x;
    let large = 1.0 - 2.0 / (exp(2.0 * x.abs()) + 1.0);
    if x.abs() < 0.625 {
        small
    } else {
        large.copysign(x)
    }
}

/// Declares `fn NAME(ARGS) BODY` whose body, a loop over a plane, runs compiled for AVX-512
/// (16-float vectors) where the CPU has AVX-512F, for AVX2 (8-float vectors) where it has AVX2
/// and FMA, as is elsewhere (the body is inlined into each copy; [`super::simd`] caps the
/// choice). The copies give the same bits: no copy contracts a product and a sum into one
/// rounding or reorders a sum (Rust does neither unasked).
macro_rules! simd_loop {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            if super::avx512::available() {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) {
                    body($($arg),*)
                }
                // SAFETY: the CPU has AVX-512F (checked just above).
                return unsafe { avx512($($arg),*) };
            }
            #[cfg(target_arch = "x86_64")]
            if super::simd::avx2() {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                // SAFETY: the CPU has AVX2 and FMA (checked just above).
                return unsafe { avx2($($arg),*) };
            }
            body($($arg),*)
        }
    };
}
pub(super) use simd_loop;

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the standard library's (the C library's) `exp`, `σ` and `tanh` in f64 on a dense
    /// grid over [−20, 20] and beyond the clamp's edges (`exp` within its range).
    #[test]
    fn the_functions_are_within_2e_7_of_the_exact_values() {
        let grid = (-400_000..=400_000).map(|i| i as f32 * 5e-5);
        let mut worst = [0f64; 3];
        for x in grid.chain([-100.0, -87.0, 0.0, 1e-8, -1e-8, 88.0, 100.0]) {
            let exact = (x as f64).exp();
            if (-87.3..=88.3).contains(&x) {
                worst[0] = worst[0].max(((exp(x) as f64 - exact) / exact).abs());
            }
            let logistic_exact = 1.0 / (1.0 + (-x as f64).exp());
            worst[1] = worst[1].max((logistic(x) as f64 - logistic_exact).abs());
            worst[2] = worst[2].max((tanh(x) as f64 - (x as f64).tanh()).abs());
        }
        assert!(
            worst[0] < 2e-7 && worst[1] < 2e-7 && worst[2] < 2e-7,
            "relative error of exp, absolute of σ and tanh: {worst:?}"
        );
        assert_eq!(tanh(30.0), 1.0);
        assert_eq!(tanh(-30.0), -1.0);
        assert!(logistic(-100.0) < 1e-37);
        assert_eq!(logistic(100.0), 1.0);
    }
}
