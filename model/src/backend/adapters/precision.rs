//! The precision flex's convolutions run at, for this process: the kernels take it as an
//! argument ([`Precision`]), but burn's CPU device carries no settings, so the flex adapter
//! reads it here for every convolution and gradient. Training sets it when asked
//! (`brn train --mixed-precision`) and clears it around validation; inference, the page and
//! the parity tests never set it.

use std::sync::atomic::{AtomicBool, Ordering};

use kernels::Precision;

/// Whether the convolutions may round their operands to bfloat16 ([`set_mixed_precision`]).
static MIXED: AtomicBool = AtomicBool::new(false);

/// Lets the convolutions and both their gradients round their operands to bfloat16 (every sum
/// stays f32) where the CPU has AMX or AVX512_BF16, for this whole process (elsewhere it
/// changes nothing). Returns whether the CPU takes it.
pub fn set_mixed_precision(on: bool) -> bool {
    MIXED.store(on, Ordering::Relaxed);
    on && Precision::Mixed.applies()
}

/// `f()` with the convolutions in f32 whatever [`set_mixed_precision`] says (for validation
/// within a mixed-precision training run), the setting restored after.
pub fn in_full_precision<R>(f: impl FnOnce() -> R) -> R {
    let mixed = MIXED.swap(false, Ordering::Relaxed);
    let result = f();
    MIXED.store(mixed, Ordering::Relaxed);
    result
}

/// The precision the convolutions run at now.
pub fn precision() -> Precision {
    if MIXED.load(Ordering::Relaxed) {
        Precision::Mixed
    } else {
        Precision::F32
    }
}

/// The products the convolutions use now, in words for a log: e.g. "AVX512-BF16 dot products
/// (bfloat16 operands, f32 sums)".
pub fn products_in_use() -> &'static str {
    precision().products()
}
