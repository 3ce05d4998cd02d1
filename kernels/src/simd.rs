//! Which x86-64 vector instructions the kernels may use: what the CPU has, capped by the
//! `BRN_SIMD` environment variable (read once per process). The cap runs another CPU kind's
//! code on this one: `BRN_SIMD=avx2` takes the paths of a CPU with AVX2 and FMA but not AVX-512
//! (the `gemm` crate still picks its own instructions for the products it runs), `BRN_SIMD=none`
//! the paths of a CPU with neither; for comparing them, and for testing them on any CPU.

/// The widest vector instructions the kernels may use, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Simd {
    /// x86-64's baseline (SSE2) only: what the compiler makes of plain loops.
    Baseline,
    /// AVX2 with FMA: 8-float vectors, 16 registers.
    Avx2,
    /// AVX-512 and what comes with it (AVX512_BF16, AMX): no cap.
    Avx512,
}

impl Simd {
    /// The cap `BRN_SIMD` asks (`avx512`, `avx2` or `none`; unset or empty: no cap), or an error
    /// that names the values it takes.
    pub fn from_env() -> Result<Self, String> {
        Self::parse(std::env::var("BRN_SIMD").ok().as_deref())
    }

    /// [`Simd::from_env`] of the variable's value (`None`: unset).
    fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("") | Some("avx512") => Ok(Self::Avx512),
            Some("avx2") => Ok(Self::Avx2),
            Some("none") => Ok(Self::Baseline),
            Some(other) => Err(format!(
                "BRN_SIMD={other} is not a vector instruction set the kernels know: use avx512 \
                 (the default: what the CPU has), avx2 or none"
            )),
        }
    }

    /// `BRN_SIMD`'s value for this cap (what [`Simd::from_env`] reads back).
    pub fn name(self) -> &'static str {
        match self {
            Self::Baseline => "none",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }

    /// The cap the kernels run under: `BRN_SIMD`'s, read once (an unknown value caps nothing;
    /// front ends report it with [`Simd::from_env`]).
    pub fn cap() -> Self {
        static CAP: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
        *CAP.get_or_init(|| Self::from_env().unwrap_or(Self::Avx512))
    }

    /// Whether the kernels may use `self`'s instructions, where the CPU has them ([`Simd::cap`]).
    pub fn allowed(self) -> bool {
        self <= Self::cap()
    }
}

/// Whether the CPU has AVX2 and FMA and the cap allows them.
#[cfg(target_arch = "x86_64")]
pub(super) fn avx2() -> bool {
    Simd::Avx2.allowed()
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order the cap compares in: a cap allows itself and what is narrower.
    #[test]
    fn a_cap_allows_the_narrower_sets() {
        assert!(Simd::Baseline < Simd::Avx2 && Simd::Avx2 < Simd::Avx512);
        // Whatever this process's cap, the baseline is always allowed.
        assert!(Simd::Baseline.allowed());
    }

    /// Each value `BRN_SIMD` takes, and an unknown one's message naming the right ones.
    #[test]
    fn the_variable_reads_as_documented() {
        assert_eq!(Simd::parse(None), Ok(Simd::Avx512));
        assert_eq!(Simd::parse(Some("")), Ok(Simd::Avx512));
        assert_eq!(Simd::parse(Some("avx512")), Ok(Simd::Avx512));
        assert_eq!(Simd::parse(Some("avx2")), Ok(Simd::Avx2));
        assert_eq!(Simd::parse(Some("none")), Ok(Simd::Baseline));
        for cap in [Simd::Baseline, Simd::Avx2, Simd::Avx512] {
            assert_eq!(Simd::parse(Some(cap.name())), Ok(cap));
        }
        let error = Simd::parse(Some("AVX2")).unwrap_err();
        assert!(
            error.contains("BRN_SIMD=AVX2") && error.contains("avx2 or none"),
            "{error}"
        );
    }
}
