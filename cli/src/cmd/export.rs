//! `brn export`: the inference-only record of a training checkpoint (what the page embeds).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use model::derain::{to_planar, to_tensor};

/// Arguments of `brn export`.
#[derive(Args)]
pub struct ExportArgs {
    /// A training output folder (its latest checkpoint), one checkpoint folder, or a folder
    /// holding a record of ours outside a run (`model.safetensors` with its config, e.g. a
    /// blend of two checkpoints by `scripts/blend-weights.py`).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The record to write (.safetensors; its config.json is written beside it).
    #[arg(short, long)]
    output: PathBuf,
    /// Store float16 (half the download; outputs change by about 1e-3).
    #[arg(long)]
    f16: bool,
}

/// Export the checkpoint's weights as an inference record, and check that it loads and
/// computes the same function.
pub fn run(args: ExportArgs) -> Result<ExitCode> {
    type B = burn_flex::Flex;
    let device = Default::default();
    let dir = crate::checkpoint::latest_checkpoint(&args.checkpoint)?
        .unwrap_or_else(|| args.checkpoint.clone());
    let record = dir.join("model.safetensors");
    if !record.is_file() {
        bail!(
            "{} holds no checkpoint (no latest.json, no model.safetensors)",
            args.checkpoint.display()
        );
    }
    // A checkpoint names its step and architecture in state.json; a record outside a run
    // carries its architecture itself (its metadata, or config.json beside it).
    let state = dir.join("state.json");
    let (net, step) = if state.is_file() {
        let state: crate::checkpoint::TrainState = serde_json::from_str(
            &std::fs::read_to_string(&state)
                .with_context(|| format!("{} cannot be read", state.display()))?,
        )
        .with_context(|| format!("{} is not a checkpoint's state", state.display()))?;
        let net = model::load_weights::<B>(&record, &state.config.model, &device)?;
        (net, format!("step {}", state.step))
    } else {
        (
            model::load_file::<B>(&record, None, &device)?,
            "no run".to_string(),
        )
    };
    let config = net.config.clone();
    let precision = if args.f16 {
        model::Precision::F16
    } else {
        model::Precision::F32
    };
    model::save_record(&net, &args.output, precision)?;
    // Check that what was written loads and computes the same function.
    let back = model::load_weights::<B>(&args.output, &config, &device)?;
    let probe = to_tensor::<B>(
        (0..3 * 24 * 24).map(|i| (i % 17) as f32 / 17.0).collect(),
        24,
        24,
        &device,
    );
    let (a, b) = (
        to_planar(net.run(probe.clone(), 2, false).background),
        to_planar(back.run(probe, 2, false).background),
    );
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let tolerance = if args.f16 { 2e-2 } else { 0.0 };
    if worst > tolerance {
        bail!("the exported record does not reproduce the checkpoint's outputs (max difference {worst})");
    }
    let size = std::fs::metadata(&args.output)?.len();
    eprintln!(
        "exported {} ({step}, {}) to {} ({:.2} MB) and its config.json",
        dir.display(),
        config.describe(),
        args.output.display(),
        size as f64 / 1e6
    );
    Ok(ExitCode::SUCCESS)
}
