//! The `brn` command's library: paper-exact metrics, dataset layouts, and the commands.

pub mod bench;
pub mod data;
pub mod eval;
pub mod loss;
pub mod plot;
pub mod synth;
pub mod train;
