//! Typed errors of the model crate; every message says what to do about it.

use thiserror::Error;

/// The error underneath one of ours (the system's, an image or format library's), kept as its
/// source so that a front end can show the whole chain.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

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
        /// What the reader underneath said, when one did.
        source: Option<Cause>,
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
    #[error("cannot decode image: {reason}")]
    Decode {
        /// What is wrong with it.
        reason: String,
        /// What the image decoder said, when it did.
        source: Option<Cause>,
    },
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
    #[error("cannot encode {what}")]
    Encode {
        /// What was being encoded (`the PNG`, `the record`, ...).
        what: String,
        /// What the encoder said.
        source: Cause,
    },
    /// A folder or file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The folder or file, as the user named it.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// A file could not be written (nothing was left half-written).
    #[error("cannot write {path}")]
    Write {
        /// The file, as the user named it.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The compute device failed (e.g. the GPU ran out of memory or was lost).
    #[error("the compute device failed: {0}; try smaller tiles or the CPU backend")]
    Device(String),
    /// Another worker's answer broke the protocol between workers (e.g. a tile's maps of the
    /// wrong number or size): a fault of the program, not of the photo, the weights or the device.
    #[error("a helper worker's answer was malformed ({0}); this is a fault of the program, not of your photo: reload the page, and report it if it happens again")]
    Protocol(String),
    /// The caller stopped the work (e.g. a Cancel button).
    #[error("cancelled")]
    Cancelled,
}

impl ModelError {
    /// A stable name for the kind of error, for programs that act on it (the page tells a
    /// cancelled derain from a failed one by it, never by the message's words): `config`,
    /// `weights`, `decode`, `too-large`, `encode`, `read`, `write`, `device`, `protocol` or
    /// `cancelled`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidConfig(_) => "config",
            Self::WeightsUnreadable { .. }
            | Self::WeightsMismatch { .. }
            | Self::WeightsUnknown { .. }
            | Self::WeightsNotFinite { .. } => "weights",
            Self::Decode { .. } => "decode",
            Self::ImageTooLarge { .. } => "too-large",
            Self::Encode { .. } => "encode",
            Self::Read { .. } => "read",
            Self::Write { .. } => "write",
            Self::Device(_) => "device",
            Self::Protocol(_) => "protocol",
            Self::Cancelled => "cancelled",
        }
    }

    /// An image that cannot be decoded, for `reason` alone.
    pub fn decode(reason: impl Into<String>) -> Self {
        Self::Decode {
            reason: reason.into(),
            source: None,
        }
    }

    /// An image that cannot be decoded, for `reason`, as the decoder's `source` says.
    pub fn decode_from(reason: impl Into<String>, source: impl Into<Cause>) -> Self {
        Self::Decode {
            reason: reason.into(),
            source: Some(source.into()),
        }
    }

    /// `what` could not be encoded, as the encoder's `source` says.
    pub fn encode(what: impl Into<String>, source: impl Into<Cause>) -> Self {
        Self::Encode {
            what: what.into(),
            source: source.into(),
        }
    }

    /// The whole message: this error and each of its sources, joined by ": " (what the CLI
    /// prints with anyhow's `{:#}`), for front ends that show one line (the page).
    pub fn report(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page's one-line message holds every link of the chain, each once (the chain is
    /// built here from errors whose messages are known).
    #[test]
    fn a_report_holds_each_source_once() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "access denied");
        let error = ModelError::Write {
            path: "out/a.png".into(),
            source: io,
        };
        assert_eq!(error.report(), "cannot write out/a.png: access denied");
        assert_eq!(error.to_string(), "cannot write out/a.png");
        let bare = ModelError::decode("the file is empty");
        assert_eq!(bare.report(), "cannot decode image: the file is empty");
        assert!(std::error::Error::source(&bare).is_none());
    }
}
