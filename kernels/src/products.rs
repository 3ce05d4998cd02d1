//! Which code computes the convolution's matrix products (and its gradients'), chosen at run
//! time from what the CPU has and the precision asked; the one place that choice is made.
//!
//! | CPU has | f32 (inference, default training) | mixed precision (training, when asked) |
//! | --- | --- | --- |
//! | AMX-BF16 (Xeon 4th generation on) | AVX-512 f32 | AMX bfloat16 tiles |
//! | AVX512_BF16 without AMX (Zen 4 on, Cooper Lake) | AVX-512 f32 | AVX512-BF16 dot products |
//! | AVX-512F | AVX-512 f32 | AVX-512 f32 (mixed cannot apply) |
//! | AVX2 and FMA, no AVX-512 | the 16-register micro-kernel on 8-float vectors | the same |
//! | the page's wasm (128-bit SIMD) | the 16-register micro-kernel on 4-float vectors | the same |
//! | none of those (x86-64 baseline, Arm) | the `gemm` crate's f32 | the same |
//!
//! The weight gradient's f32 products are the `gemm` crate's on every CPU. `BRN_SIMD` caps the
//! instructions ([`super::simd`]), so that one CPU runs the paths of the kinds below it.
//!
//! Mixed precision rounds the convolutions' operands (input, kernel, output gradient) to
//! bfloat16 and keeps every sum in f32; a shape a bfloat16 kernel does not take stays f32.

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
use super::amx;
#[cfg(target_arch = "x86_64")]
use super::avx512_bf16;
use super::layout::Shape;

/// The precision of the convolutions' products: the caller's choice, passed to each
/// convolution and gradient.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 operands and sums (inference, and training unless asked otherwise).
    #[default]
    F32,
    /// The operands (input, kernel, output gradient) rounded to bfloat16, every sum f32, where
    /// the CPU has bfloat16 products (AMX or AVX512_BF16); f32 elsewhere. For training.
    Mixed,
}

impl Precision {
    /// Whether this CPU computes at this precision otherwise than in f32 (mixed precision on a
    /// CPU with bfloat16 products).
    pub fn applies(self) -> bool {
        Products::best(self) != Products::best_f32()
    }

    /// The products this precision uses on this CPU, in words for a log: e.g. "AVX512-BF16
    /// dot products (bfloat16 operands, f32 sums)".
    pub fn products(self) -> &'static str {
        Products::best(self).name()
    }
}

/// Which code computes the convolution's matrix products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Products {
    /// The `gemm` crate, one product per tap (any CPU, the page's wasm).
    Gemm,
    /// The AVX-512 micro-kernels ([`super::avx512`]).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// The 16-register micro-kernel ([`super::narrow`]) on AVX2's 8-float vectors, with fused
    /// multiply-adds, for the forward and the input gradient.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// The AVX512-BF16 dot products in bfloat16 ([`super::avx512_bf16`]), with the f32
    /// products for the shapes they do not take.
    #[cfg(target_arch = "x86_64")]
    Avx512Bf16,
    /// The AMX tile products in bfloat16 ([`super::amx`]), with the f32 products for the
    /// shapes they do not take.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    Amx,
    /// The 16-register micro-kernel ([`super::narrow`]) on [`super::lanes::Quad`]: WebAssembly's
    /// 128-bit SIMD in the page, portable arrays of four floats in the native tests.
    #[cfg(any(test, all(target_arch = "wasm32", target_feature = "simd128")))]
    Quads,
}

impl Products {
    /// The fastest this CPU runs at `precision`.
    pub(super) fn best(precision: Precision) -> Self {
        match precision {
            Precision::F32 => Self::best_f32(),
            Precision::Mixed => Self::best_mixed(),
        }
    }

    /// The fastest f32 products this CPU runs.
    pub(super) fn best_f32() -> Self {
        #[cfg(target_arch = "x86_64")]
        if super::avx512::available() {
            return Self::Avx512;
        }
        #[cfg(target_arch = "x86_64")]
        if super::simd::avx2() {
            return Self::Avx2;
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        return Self::Quads;
        #[allow(unreachable_code)]
        Self::Gemm
    }

    /// The fastest products with bfloat16 operands this CPU runs (the tile unit before the
    /// dot products), else the best f32 ones.
    pub(super) fn best_mixed() -> Self {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if amx::available() {
            return Self::Amx;
        }
        #[cfg(target_arch = "x86_64")]
        if avx512_bf16::available() {
            return Self::Avx512Bf16;
        }
        Self::best_f32()
    }

    /// These products for a convolution (or input gradient) of `shape`, or the best f32 ones
    /// where they do not take it.
    #[cfg_attr(
        not(all(target_arch = "x86_64", target_os = "linux")),
        allow(unused_variables)
    )]
    pub(super) fn for_shape(self, shape: Shape) -> Self {
        match self {
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Self::Amx if !amx::applies(shape.channels_out, shape.channels_in) => Self::best_f32(),
            products => products,
        }
    }

    /// What this CPU's products are called in a log.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Gemm => gemm_name(),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => "AVX-512 f32",
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => "AVX2 f32 (8-float micro-kernel; gemm for the weight gradient)",
            #[cfg(target_arch = "x86_64")]
            Self::Avx512Bf16 => "AVX512-BF16 dot products (bfloat16 operands, f32 sums)",
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Self::Amx => "AMX bfloat16 tiles (bfloat16 operands, f32 sums)",
            #[cfg(any(test, all(target_arch = "wasm32", target_feature = "simd128")))]
            Self::Quads => super::lanes::QUAD_NAME,
        }
    }

    /// Every f32 one this CPU runs (AVX2's too where it also has AVX-512), and the
    /// 16-register micro-kernel on portable vectors (the tests check each).
    #[cfg(test)]
    pub(super) fn all() -> Vec<Self> {
        let mut all = vec![Self::Gemm, Self::Quads];
        #[cfg(target_arch = "x86_64")]
        if super::simd::avx2() {
            all.push(Self::Avx2);
        }
        if !all.contains(&Self::best_f32()) {
            all.push(Self::best_f32());
        }
        all
    }

    /// Every one with bfloat16 operands this CPU runs (the tests check each;
    /// `tests::the_cpus_products_are_the_ones_taken` that none is missed).
    #[cfg(test)]
    pub(super) fn all_mixed() -> Vec<Self> {
        #[allow(unused_mut)]
        let mut all = Vec::new();
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if amx::available() {
            all.push(Self::Amx);
        }
        #[cfg(target_arch = "x86_64")]
        if avx512_bf16::available() {
            all.push(Self::Avx512Bf16);
        }
        all
    }
}

/// The `gemm` crate's products, by the vector instructions it picks on this CPU (its own
/// choice: `BRN_SIMD` does not cap it).
fn gemm_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        return "AVX-512 f32 (gemm)";
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        return "AVX2 f32 (gemm)";
    }
    #[cfg(target_arch = "aarch64")]
    return "NEON f32 (gemm)";
    #[cfg(target_arch = "wasm32")]
    return "wasm f32 (gemm)";
    #[allow(unreachable_code)]
    "scalar f32 (gemm)"
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU's own list of flags (Linux's `/proc/cpuinfo`, read independently of the
    /// standard library's detection), or `None` elsewhere.
    fn cpu_flags() -> Option<Vec<String>> {
        let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
        let line = info.lines().find(|line| line.starts_with("flags"))?;
        Some(line.split_whitespace().map(str::to_string).collect())
    }

    /// Where the CPU reports AMX-BF16, AVX512_BF16, AVX-512F or AVX2 with FMA (and `BRN_SIMD`
    /// allows them), the products built for it are among those the kernel tests check, and
    /// the precisions take them: so those tests cannot pass by skipping on a CPU that has the
    /// instructions. Without `/proc/cpuinfo` there is nothing to compare with: a skip, or a
    /// failure under `BRN_REQUIRE_ISA=1`.
    #[test]
    fn the_cpus_products_are_the_ones_taken() {
        let Some(flags) = cpu_flags() else {
            let required = std::env::var("BRN_REQUIRE_ISA").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "BRN_REQUIRE_ISA=1, but no /proc/cpuinfo to check against"
            );
            eprintln!("no /proc/cpuinfo: nothing to compare the detection with");
            return;
        };
        // A flag counts where the cap allows its instructions.
        let level = |flag: &str| match flag {
            "avx2" | "fma" => crate::Simd::Avx2,
            _ => crate::Simd::Avx512,
        };
        let has = |flag: &str| flags.iter().any(|f| f == flag) && level(flag).allowed();
        let mixed = Products::all_mixed();
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            let amx = has("amx_bf16") && has("amx_tile");
            assert_eq!(mixed.contains(&Products::Amx), amx, "AMX: {mixed:?}");
            assert_eq!(
                mixed.contains(&Products::Avx512Bf16),
                has("avx512_bf16"),
                "AVX512_BF16: {mixed:?}"
            );
            let expected = if amx {
                Products::Amx
            } else if has("avx512_bf16") {
                Products::Avx512Bf16
            } else {
                Products::best_f32()
            };
            assert_eq!(Products::best_mixed(), expected);
            assert_eq!(Precision::Mixed.applies(), expected != Products::best_f32());
            assert_eq!(Products::best_f32() == Products::Avx512, has("avx512f"));
            let avx2 = has("avx2") && has("fma");
            assert_eq!(Products::all().contains(&Products::Avx2), avx2);
            assert_eq!(
                Products::best_f32() == Products::Avx2,
                avx2 && !has("avx512f")
            );
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        assert!(mixed.is_empty() && !has("avx512_bf16"));
    }
}
