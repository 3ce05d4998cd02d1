//! The adapters between burn's backends and [`BrnBackend`](super::BrnBackend): flex on the CPU
//! kernels, the autodiff backend's own nodes, and the GPU backends with the banded weight
//! gradient. Each file states what its backend runs on what, and where it falls back.

mod autodiff;
mod autodiff_cat;
mod autodiff_lstm;
pub mod banded;
#[cfg(feature = "flex")]
mod flex;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod gpu;
#[cfg(feature = "flex")]
pub mod precision;

#[cfg(feature = "ndarray")]
impl super::BrnBackend for burn_ndarray::NdArray {}
