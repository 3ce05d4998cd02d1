//! The `brn` command's library: paper-exact metrics, dataset layouts, and the commands.

pub mod bench;
pub mod data;
pub mod eval;
