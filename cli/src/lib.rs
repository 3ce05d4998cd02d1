//! The `brn` command's library: paper-exact metrics, dataset layouts, training, and the
//! commands themselves (`cmd`), which `main.rs` only dispatches to.

#![warn(missing_docs)]

pub mod allocator;
pub mod bench;
pub mod checkpoint;
pub mod cmd;
pub mod config;
pub mod data;
pub mod degrade;
pub mod device;
pub mod eval;
pub mod label;
pub mod loader;
pub mod loss;
pub mod plot;
pub mod rain;
pub mod rendered;
pub mod sheet;
pub mod smooth;
pub mod synth;
pub mod train;
