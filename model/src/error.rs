//! Typed errors of the model crate; every message says what to do about it.

use thiserror::Error;

/// What can go wrong when building a network, loading weights or reading images.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The configuration describes no network (e.g. T = 0).
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
    /// The weights file could not be read or parsed.
    #[error("cannot read weights '{path}': {reason}")]
    WeightsUnreadable {
        /// The file, as the user named it.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The weights file was read but does not fit the chosen architecture.
    #[error("the weights in '{path}' do not fit the {arch} architecture:\n{details}\nIs the file truncated, or of another architecture?")]
    WeightsMismatch {
        /// The file, as the user named it.
        path: String,
        /// The architecture it was loaded as.
        arch: String,
        /// The missing, unexpected and mis-shaped tensors, one a line.
        details: String,
    },
    /// An authors' file whose tensors fit none of the architectures we know.
    #[error("the tensors in '{path}' fit none of the architectures known here ({known}): is it a checkpoint of another network, or damaged?")]
    WeightsUnknown {
        /// The file, as the user named it.
        path: String,
        /// The architectures tried.
        known: String,
    },
    /// A weights file holds NaN or infinite values.
    #[error("the weights in '{path}' are damaged: tensor {tensor} holds NaN or infinite values")]
    WeightsNotFinite {
        /// The file, as the user named it.
        path: String,
        /// The first tensor found with a non-finite value.
        tensor: String,
    },
    /// The image could not be decoded.
    #[error("cannot decode image: {0}")]
    Decode(String),
    /// The image is larger than we are willing to allocate.
    #[error("image is {width}x{height} pixels, larger than the limit of {limit} pixels per side / {max_pixels} pixels in all; downscale it first")]
    ImageTooLarge {
        /// The image's width, as its header claims.
        width: u64,
        /// The image's height, as its header claims.
        height: u64,
        /// The most pixels per side accepted.
        limit: u32,
        /// The most pixels in all accepted.
        max_pixels: u64,
    },
    /// An image or a record could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// A folder or file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The folder or file, as the user named it.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// A file could not be written (nothing was left half-written).
    #[error("cannot write {0}")]
    Write(String),
    /// The compute device failed (e.g. the GPU ran out of memory or was lost).
    #[error("the compute device failed: {0}; try smaller tiles or the CPU backend")]
    Device(String),
    /// The caller stopped the work (e.g. a Cancel button).
    #[error("cancelled")]
    Cancelled,
}

impl ModelError {
    /// A stable name for the kind of error, for programs that act on it (the page tells a
    /// cancelled derain from a failed one by it, never by the message's words): `config`,
    /// `weights`, `decode`, `too-large`, `encode`, `read`, `write`, `device` or `cancelled`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidConfig(_) => "config",
            Self::WeightsUnreadable { .. }
            | Self::WeightsMismatch { .. }
            | Self::WeightsUnknown { .. }
            | Self::WeightsNotFinite { .. } => "weights",
            Self::Decode(_) => "decode",
            Self::ImageTooLarge { .. } => "too-large",
            Self::Encode(_) => "encode",
            Self::Read { .. } => "read",
            Self::Write(_) => "write",
            Self::Device(_) => "device",
            Self::Cancelled => "cancelled",
        }
    }
}
