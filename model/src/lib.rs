//! The BRN family of single-image deraining networks (Ren et al., IEEE TIP 2020) on burn,
//! and everything the command line and the web page share: image ↔ tensor conversion,
//! tiled inference and weight loading.

#![warn(missing_docs)]

pub mod amount;
pub mod backend;
pub mod branch;
pub mod cell;
pub mod config;
pub mod error;
pub mod network;

pub use backend::BrnBackend;
pub use config::{BrnConfig, CellKind, Coupling, Mapping};
pub use error::{Cause, ModelError};
pub use network::{Brn, Stages};
pub mod io;
pub mod weights;

pub use weights::{load_any, load_file, load_weights, save_record, Precision, WeightsFormat};
pub mod derain;
pub mod image;
pub mod tiling;

pub use derain::{derain, derain_async, derain_shared, tile_maps, DerainOptions, Derained, Output};
pub use image::{decode, encode_png, Picture};
