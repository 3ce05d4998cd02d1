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
use model::backend::banded::{use_weight_gradient, WeightGradient};
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

/// Where training runs (`brn train`, `brn bench --train`): the device, its kernel cache, and
/// the CPU's precision. Applied once by [`DeviceArgs::apply`].
#[derive(Args, Clone)]
pub struct DeviceArgs {
    /// Device: cpu, gpu (wgpu), auto, or cuda:N in a build with the `cuda` feature; `brn train`
    /// also takes several CUDA devices (cuda:0,cuda:1) to train data-parallel.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// With a GPU: where compiled kernels and autotune results are kept between runs, so that
    /// the next run's warm-up takes seconds (README, "Kernel caches") [`brn train`'s default:
    /// OUT/cache, inside the run folder, so that it travels with the run].
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// The weight gradient on a GPU: banded (many small products, fast on a GPU) or burn
    /// (burn's own, for an A/B comparison). The CPU always runs its own kernel.
    #[arg(long, default_value = "banded", value_name = "banded|burn")]
    pub weight_gradient: WeightGradient,
    /// On the CPU: round the convolutions' operands to bfloat16 (every sum stays f32) where
    /// the CPU has Intel AMX or AVX512_BF16 (AMD Zen 4 on), a faster step; elsewhere it warns
    /// and nothing changes. Validation stays f32.
    #[arg(long)]
    pub mixed_precision: bool,
}

impl DeviceArgs {
    /// Make the process's kernels what the arguments ask: the GPU's weight gradient and the
    /// CPU's precision (both process-wide, as burn's devices carry no such settings).
    pub fn apply(&self) {
        use_weight_gradient(self.weight_gradient);
        crate::device::use_mixed_precision(self.mixed_precision);
    }
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
