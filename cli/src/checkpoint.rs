//! Checkpoints: atomic folders of weights, optimizer state and step, with a `latest.json`
//! pointer that only moves once a checkpoint is complete.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use model::Brn;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;

/// What a checkpoint holds besides the weights and the optimizer state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainState {
    /// Steps done.
    pub step: usize,
    /// The run's config (a resumed run goes on with it).
    pub config: TrainConfig,
}

const LATEST: &str = "latest.json";

/// The newest complete checkpoint folder in `dir`, if any.
pub fn latest_checkpoint(dir: &Path) -> Result<Option<PathBuf>> {
    let pointer = dir.join(LATEST);
    if !pointer.is_file() {
        return Ok(None);
    }
    let name: String = serde_json::from_str(&std::fs::read_to_string(&pointer)?)
        .with_context(|| format!("{} is damaged", pointer.display()))?;
    Ok(Some(dir.join(name)))
}

/// Write a checkpoint of `net`, `optim` and `state` into `dir/step-N/`, then point
/// `latest.json` at it and remove the previous one.
pub fn save_checkpoint<B: AutodiffBackend, O: Optimizer<Brn<B>, B>>(
    dir: &Path,
    net: &Brn<B>,
    optim: &O,
    state: &TrainState,
) -> Result<PathBuf> {
    let name = format!("step-{:08}", state.step);
    let target = dir.join(&name);
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir_all(&target)
        .with_context(|| format!("cannot create {}", target.display()))?;
    model::save_record(
        &net.valid(),
        &target.join("model.safetensors"),
        model::Precision::F32,
    )
    .with_context(|| format!("cannot write the checkpoint in {}", target.display()))?;
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    // burn's own record keeps the parameter ids that the optimizer state is keyed by.
    recorder
        .record(net.clone().into_record(), target.join("model"))
        .with_context(|| format!("cannot write the training state in {}", target.display()))?;
    recorder
        .record(optim.to_record(), target.join("optimizer"))
        .with_context(|| format!("cannot write the optimizer state in {}", target.display()))?;
    model::io::write_atomic(
        &target.join("state.json"),
        serde_json::to_string_pretty(state)?.as_bytes(),
    )?;
    // Only now does the checkpoint become the latest; a crash before this leaves the old one.
    let previous = latest_checkpoint(dir)?;
    model::io::write_atomic(&dir.join(LATEST), serde_json::to_string(&name)?.as_bytes())?;
    if let Some(previous) = previous.filter(|p| *p != target) {
        let _ = std::fs::remove_dir_all(previous);
    }
    Ok(target)
}

/// Load `dir`'s latest checkpoint into `net` (whose parameters are not yet read) and `optim`,
/// on `device`. The records are backend-neutral (full precision, named tensors), so a run
/// checkpointed on one backend (CUDA) continues on another (the CPU). The config must be the
/// one the checkpoint was trained with.
pub fn restore<B: AutodiffBackend, O: Optimizer<Brn<B>, B>>(
    dir: &Path,
    config: &TrainConfig,
    net: Brn<B>,
    optim: O,
    device: &B::Device,
) -> Result<(Brn<B>, O, TrainState)> {
    let Some(checkpoint) = latest_checkpoint(dir)? else {
        anyhow::bail!("--resume: {} holds no checkpoint", dir.display());
    };
    let state_path = checkpoint.join("state.json");
    let state: TrainState = serde_json::from_str(
        &std::fs::read_to_string(&state_path)
            .with_context(|| format!("cannot read {}", state_path.display()))?,
    )
    .with_context(|| format!("{} is damaged", state_path.display()))?;
    if !state.config.same_run(config) {
        anyhow::bail!(
            "--resume: the config differs from the one the checkpoint was trained with ({}); only the data folders may change",
            state_path.display()
        );
    }
    if state.config != *config {
        eprintln!(
            "resuming with the data folders of the given config (the checkpoint's were elsewhere)"
        );
    }
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    let weights = recorder
        .load(checkpoint.join("model"), device)
        .with_context(|| format!("cannot read the training state in {}", checkpoint.display()))?;
    let record = recorder
        .load(checkpoint.join("optimizer"), device)
        .with_context(|| {
            format!(
                "cannot read the optimizer state in {}",
                checkpoint.display()
            )
        })?;
    eprintln!(
        "resuming from {} (step {})",
        checkpoint.display(),
        state.step
    );
    Ok((net.load_record(weights), optim.load_record(record), state))
}
