//! Vectors for [`super::narrow`]'s micro-kernel: the one trait it is written against,
//! WebAssembly's 128-bit SIMD (the page's CPU path), AVX2's 256-bit vectors (x86-64 CPUs
//! without AVX-512) and a portable array of four floats that computes the same sums in the
//! same order, so that the micro-kernel's loops are checked against the f64 definitions on any
//! CPU the tests run on (the wasm vectors themselves by the browser tests: the page's pixels
//! against the native derain; AVX2's where the CPU has it).

/// Floats in a vector: what the micro-kernel needs of them.
pub(super) trait Lanes: Copy {
    /// Floats in a vector (four but AVX2's eight).
    const LANES: usize = 4;

    /// Zeros.
    fn zero() -> Self;

    /// `value` in every lane.
    fn splat(value: f32) -> Self;

    /// [`Lanes::LANES`] floats from `p` (no alignment asked).
    ///
    /// # Safety
    /// `p` reaches that many floats.
    unsafe fn load(p: *const f32) -> Self;

    /// The floats to `p` (no alignment asked).
    ///
    /// # Safety
    /// `p` reaches [`Lanes::LANES`] floats that may be written.
    unsafe fn store(self, p: *mut f32);

    /// `self + a·b` per lane: a product then a sum, each rounded (plain wasm SIMD, and the
    /// portable lanes), relaxed SIMD's multiply-add (the `relaxed-simd` feature) or AVX2's
    /// fused one.
    fn mul_add(self, a: Self, b: Self) -> Self;

    /// `self + other` per lane.
    fn add(self, other: Self) -> Self;
}

/// The four-float vectors [`super::narrow`]'s micro-kernel runs on: WebAssembly's in the page,
/// portable arrays in the native tests.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(super) type Quad = Simd128;
#[cfg(all(test, not(all(target_arch = "wasm32", target_feature = "simd128"))))]
pub(super) type Quad = Portable;

/// What [`Quad`]'s products are called in a log.
#[cfg(all(
    target_arch = "wasm32",
    target_feature = "simd128",
    not(feature = "relaxed-simd")
))]
pub(super) const QUAD_NAME: &str = "wasm SIMD f32 (4-float vectors)";
#[cfg(all(
    target_arch = "wasm32",
    target_feature = "simd128",
    feature = "relaxed-simd"
))]
pub(super) const QUAD_NAME: &str = "wasm relaxed SIMD f32 (4-float vectors, multiply-add)";
#[cfg(all(test, not(all(target_arch = "wasm32", target_feature = "simd128"))))]
pub(super) const QUAD_NAME: &str = "portable f32 (4-float arrays)";

/// Four floats in an array: the micro-kernel on any CPU (its tests).
#[cfg(test)]
#[derive(Clone, Copy)]
pub(super) struct Portable([f32; 4]);

#[cfg(test)]
impl Lanes for Portable {
    fn zero() -> Self {
        Self([0.0; 4])
    }

    fn splat(value: f32) -> Self {
        Self([value; 4])
    }

    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller's promise.
        Self(unsafe { p.cast::<[f32; 4]>().read_unaligned() })
    }

    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller's promise.
        unsafe { p.cast::<[f32; 4]>().write_unaligned(self.0) }
    }

    fn mul_add(self, a: Self, b: Self) -> Self {
        Self(std::array::from_fn(|i| self.0[i] + a.0[i] * b.0[i]))
    }

    fn add(self, other: Self) -> Self {
        Self(std::array::from_fn(|i| self.0[i] + other.0[i]))
    }
}

/// WebAssembly's `v128` as four floats (the `simd128` target feature, which the page's build
/// turns on: `.cargo/config.toml`).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[derive(Clone, Copy)]
pub(super) struct Simd128(std::arch::wasm32::v128);

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
impl Lanes for Simd128 {
    #[inline(always)]
    fn zero() -> Self {
        Self(std::arch::wasm32::f32x4_splat(0.0))
    }

    #[inline(always)]
    fn splat(value: f32) -> Self {
        Self(std::arch::wasm32::f32x4_splat(value))
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller's promise (`v128_load` asks no alignment).
        Self(unsafe { std::arch::wasm32::v128_load(p.cast()) })
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller's promise (`v128_store` asks no alignment).
        unsafe { std::arch::wasm32::v128_store(p.cast(), self.0) }
    }

    #[cfg(not(feature = "relaxed-simd"))]
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        use std::arch::wasm32::{f32x4_add, f32x4_mul};
        Self(f32x4_add(self.0, f32x4_mul(a.0, b.0)))
    }

    /// Relaxed SIMD's multiply-add: fused or not as the browser's CPU does it (one rounding
    /// or two; the same browser always the same). Inlined into [`super::narrow::products`],
    /// which the feature compiles with `relaxed-simd` enabled.
    #[cfg(feature = "relaxed-simd")]
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        // SAFETY: reached only from `products`, compiled with `relaxed-simd` (wasm validates
        // the whole module before it runs: a browser without it refuses to load this build).
        #[allow(unused_unsafe)]
        Self(unsafe { std::arch::wasm32::f32x4_relaxed_madd(a.0, b.0, self.0) })
    }

    #[inline(always)]
    fn add(self, other: Self) -> Self {
        Self(std::arch::wasm32::f32x4_add(self.0, other.0))
    }
}

/// AVX2's `__m256` as eight floats, for x86-64 CPUs with AVX2 and FMA but not AVX-512. Its
/// methods are inlined into [`super::narrow::products_avx2`], which is compiled with those
/// features and called only where the CPU has them; they are not to be called elsewhere.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) struct Avx2(std::arch::x86_64::__m256);

// SAFETY (every method): reached only from `products_avx2` (see above), so the CPU has AVX and
// FMA; loads and stores ask no alignment.
#[cfg(target_arch = "x86_64")]
impl Lanes for Avx2 {
    const LANES: usize = 8;

    #[inline(always)]
    fn zero() -> Self {
        Self(unsafe { std::arch::x86_64::_mm256_setzero_ps() })
    }

    #[inline(always)]
    fn splat(value: f32) -> Self {
        Self(unsafe { std::arch::x86_64::_mm256_set1_ps(value) })
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Self(unsafe { std::arch::x86_64::_mm256_loadu_ps(p) })
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { std::arch::x86_64::_mm256_storeu_ps(p, self.0) }
    }

    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        Self(unsafe { std::arch::x86_64::_mm256_fmadd_ps(a.0, b.0, self.0) })
    }

    #[inline(always)]
    fn add(self, other: Self) -> Self {
        Self(unsafe { std::arch::x86_64::_mm256_add_ps(self.0, other.0) })
    }
}
