//! The `brn` commands, one module each; `main.rs` parses the arguments and dispatches here.

pub mod bench;
pub mod derain;
pub mod eval;
pub mod export;
pub mod synth;
pub mod train;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::backend::Backend;
use clap::Args;
use model::{BrnConfig, Picture};

/// The network a command runs: weights, architecture, stages and device.
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// Weights: our record (.safetensors, config inside or config.json beside) or an authors'
    /// .pth [default: the built-in BRN weights described in WEIGHTS.md].
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Architecture of an authors' .pth [default: found from the file's tensors; our records
    /// carry their own].
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(BrnConfig::PRESETS))]
    pub arch: Option<String>,
    /// Number of stages T [default: the architecture's, 8 for BRN and 6 for PReNet/PRN].
    #[arg(long)]
    pub stages: Option<usize>,
    /// Device: cpu; gpu (the platform's GPU through wgpu: Vulkan, Metal or DX12, with the
    /// page's kernels); auto (the GPU if one is usable, else the CPU); or cuda:N in a build
    /// with the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// The project's default weights (see WEIGHTS.md), built into the binary so that it derains
/// out of the box wherever it is copied.
const DEFAULT_WEIGHTS: &[u8] = include_bytes!("../../../weights/brn-default.safetensors");

/// The model the arguments ask for, and the number of stages to run.
pub fn load_model<B: Backend>(
    args: &ModelArgs,
    device: &B::Device,
) -> Result<(model::Brn<B>, usize)> {
    let arch = args.arch.as_deref().map(BrnConfig::preset).transpose()?;
    let model = match &args.weights {
        Some(path) => model::load_file::<B>(path, arch.as_ref(), device).with_context(|| {
            match &args.arch {
                Some(name) => {
                    format!("with --arch {name} (leave --arch out to detect the architecture)")
                }
                None => "loading --weights".to_string(),
            }
        })?,
        None => match args.arch.as_deref() {
            None | Some("brn") => model::load_any::<B>(
                DEFAULT_WEIGHTS.to_vec(),
                None,
                "the built-in default weights",
                device,
            )?,
            Some(other) => {
                bail!("the built-in default weights are BRN's; pass --weights FILE for --arch {other}")
            }
        },
    };
    let stages = args.stages.unwrap_or(model.config.stages);
    if stages == 0 {
        bail!("--stages must be at least 1");
    }
    Ok((model, stages))
}

/// Read and decode an image file, naming the file in any error.
pub fn read_picture(path: &Path) -> Result<Picture> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    model::decode(&bytes).with_context(|| format!("{}", path.display()))
}
