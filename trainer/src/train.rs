//! The training loop: deterministic batches, Adam with the paper's schedule, atomic
//! checkpoints that resume bit for bit, validation with the paper's metric each epoch.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use model::derain::{to_planar, to_tensor};
use model::{Brn, BrnConfig};
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::loss::{loss, LossKind};
use crate::synth::{add_rain, RainConfig};
use crate::{data, eval};

/// Median seconds of one training step (forward, SSIM loss, backward, Adam update) of BRN on
/// random patches: what the training bench prints. One warm-up step is not counted.
pub fn time_steps<B: AutodiffBackend>(
    batch: usize,
    patch: usize,
    stages: usize,
    runs: usize,
    device: &B::Device,
) -> Result<f64> {
    let mut net = BrnConfig::brn().with_stages(stages).init::<B>(device)?;
    let mut optim = AdamConfig::new().init::<B, Brn<B>>();
    let shape = [batch, 3, patch, patch];
    let n = shape.iter().product::<usize>();
    let pixels = |seed: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 2654435761usize + seed) % 1000) as f32 / 1000.0)
            .collect()
    };
    let mut times = Vec::new();
    for run in 0..=runs {
        let rainy =
            Tensor::<B, 4>::from_data(burn::tensor::TensorData::new(pixels(run), shape), device);
        let clean = rainy.clone().mul_scalar(0.9);
        let start = Instant::now();
        let out = net.run(rainy.clone(), stages, false);
        let value = loss(LossKind::Ssim, rainy, clean, out);
        let grads = GradientsParams::from_grads(value.backward(), &net);
        net = optim.step(1e-3, net, grads);
        // Reading a weight back waits for the update to finish (lazy backends).
        let _: f64 = net
            .background
            .output
            .weight
            .val()
            .sum()
            .into_scalar()
            .elem();
        if run > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(crate::bench::median(&mut times))
}

/// Everything a training run is made of; saved next to every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The architecture: a preset name (`"brn"`), or an object of `BrnConfig` fields over the
    /// preset named by its `arch` field (default `brn`), e.g. `{"arch": "prenet", "stages": 4}`.
    #[serde(deserialize_with = "model_spec")]
    pub model: BrnConfig,
    #[serde(default = "defaults::loss")]
    pub loss: LossKind,
    /// Epochs; the learning rate drops ×0.2 at 30 %, 50 % and 80 % of them (the paper's 30/50/80 of 100).
    #[serde(default = "defaults::epochs")]
    pub epochs: usize,
    /// Steps (batches) per epoch.
    #[serde(default = "defaults::steps_per_epoch")]
    pub steps_per_epoch: usize,
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// Square training patch side in pixels.
    #[serde(default = "defaults::patch")]
    pub patch: usize,
    #[serde(default = "defaults::lr")]
    pub lr: f64,
    #[serde(default)]
    pub seed: u64,
    /// Folders of clean photos made rainy on the fly.
    #[serde(default)]
    pub clean: Vec<PathBuf>,
    /// Rain presets to draw from for each synthetic patch (e.g. ["light", "heavy"]).
    #[serde(default = "defaults::presets")]
    pub presets: Vec<String>,
    /// Paired folders (Rain100L/H, Rain1400/12600 or rainy/ + clean/ layouts).
    #[serde(default)]
    pub paired: Vec<PathBuf>,
    /// Folders of clean photos for validation (made rainy with a fixed seed).
    #[serde(default)]
    pub validation: Vec<PathBuf>,
    /// Validation images are centre-cropped to at most this side (CPU time).
    #[serde(default = "defaults::validation_crop")]
    pub validation_crop: usize,
    /// Save a checkpoint every this many steps (and at every epoch end).
    #[serde(default = "defaults::checkpoint_every")]
    pub checkpoint_every: usize,
    /// Start a new run from these weights (our record or an authors' `.pth` of the same
    /// architecture; T may differ) instead of random ones; the optimizer starts fresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
}

/// A model given as a preset name or as fields over a preset.
fn model_spec<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<BrnConfig, D::Error> {
    use serde::de::Error;
    let value = serde_json::Value::deserialize(deserializer)?;
    let (arch, fields) = match value {
        serde_json::Value::String(name) => (name, serde_json::Map::new()),
        serde_json::Value::Object(mut fields) => {
            let arch = match fields.remove("arch") {
                Some(serde_json::Value::String(name)) => name,
                Some(other) => {
                    return Err(D::Error::custom(format!(
                        "model.arch must be a preset name, not {other}"
                    )))
                }
                None => "brn".to_string(),
            };
            (arch, fields)
        }
        other => {
            return Err(D::Error::custom(format!(
                "model must be a preset name or an object, not {other}"
            )))
        }
    };
    let base = BrnConfig::preset(&arch).map_err(D::Error::custom)?;
    let mut merged = serde_json::to_value(base).map_err(D::Error::custom)?;
    let known: Vec<String> = merged
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    for (key, value) in fields {
        if !known.contains(&key) {
            return Err(D::Error::custom(format!(
                "unknown model field `{key}` (known: arch, {})",
                known.join(", ")
            )));
        }
        merged[key] = value;
    }
    serde_json::from_value(merged).map_err(D::Error::custom)
}

mod defaults {
    use super::LossKind;
    pub fn loss() -> LossKind {
        LossKind::Ssim
    }
    pub fn epochs() -> usize {
        100
    }
    pub fn steps_per_epoch() -> usize {
        100
    }
    pub fn batch_size() -> usize {
        12
    }
    pub fn patch() -> usize {
        100
    }
    pub fn lr() -> f64 {
        1e-3
    }
    pub fn presets() -> Vec<String> {
        vec!["light".into(), "heavy".into()]
    }
    pub fn validation_crop() -> usize {
        256
    }
    pub fn checkpoint_every() -> usize {
        100
    }
}

impl TrainConfig {
    /// Refuse configurations that cannot train, saying which field is wrong.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        for (name, value) in [
            ("epochs", self.epochs),
            ("steps_per_epoch", self.steps_per_epoch),
            ("batch_size", self.batch_size),
            ("checkpoint_every", self.checkpoint_every),
        ] {
            if value == 0 {
                bail!("config: {name} must be at least 1");
            }
        }
        if self.patch < 16 {
            bail!("config: patch must be at least 16 pixels (the paper uses 100)");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("config: lr must be a positive number");
        }
        if self.clean.is_empty() && self.paired.is_empty() {
            bail!("config: give training data: `clean` folders (synthetic rain) and/or `paired` folders");
        }
        for preset in &self.presets {
            if RainConfig::preset(preset).is_none() {
                bail!("config: unknown rain preset '{preset}' (known: light, heavy)");
            }
        }
        if !self.clean.is_empty() && self.presets.is_empty() {
            bail!("config: `presets` must name at least one rain preset for the clean folders");
        }
        Ok(())
    }

    /// Learning rate at `epoch` (0-based): ×0.2 at 30 %, 50 % and 80 % of the epochs.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let drops = [30, 50, 80]
            .iter()
            .filter(|&&m| epoch * 100 >= m * self.epochs)
            .count();
        self.lr * 0.2f64.powi(drops as i32)
    }

    /// Read a JSON or TOML-free JSON config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let config: Self = serde_json::from_str(&text)
            .with_context(|| format!("config {} is not valid", path.display()))?;
        config.validate()?;
        Ok(config)
    }
}

/// Training images held in memory as 8-bit RGB.
pub struct Sources {
    clean: Vec<RgbImage>,
    paired: Vec<(RgbImage, RgbImage)>,
    presets: Vec<RainConfig>,
}

fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let picture = model::decode(&bytes).with_context(|| path.display().to_string())?;
    let n = picture.width * picture.height;
    let pixels = (0..n)
        .flat_map(|i| [0, 1, 2].map(|c| model::image::to_u8(picture.rgb[c * n + i] + 0.5 / 255.0)))
        .collect();
    Ok(
        RgbImage::from_raw(picture.width as u32, picture.height as u32, pixels)
            .expect("sizes match"),
    )
}

impl Sources {
    /// Load every image (decoded in parallel, kept in folder order), skipping unreadable ones
    /// (and ones smaller than a patch) with a warning.
    pub fn load(config: &TrainConfig) -> Result<Self> {
        use rayon::prelude::*;
        let big_enough = |img: &RgbImage| {
            img.width() as usize >= config.patch && img.height() as usize >= config.patch
        };
        let mut paths = Vec::new();
        for dir in &config.clean {
            paths.extend(data::image_files(dir)?);
        }
        let loaded: Vec<_> = paths.par_iter().map(|path| load_rgb(path)).collect();
        let mut clean = Vec::new();
        for (path, result) in paths.iter().zip(loaded) {
            match result {
                Ok(img) if big_enough(&img) => clean.push(img),
                Ok(_) => eprintln!(
                    "warning: skipping {}: smaller than the patch",
                    path.display()
                ),
                Err(e) => eprintln!("warning: skipping {}: {e:#}", path.display()),
            }
        }
        let mut pairs = Vec::new();
        for dir in &config.paired {
            pairs.extend(data::pairs(dir)?);
        }
        let loaded: Vec<_> = pairs
            .par_iter()
            .map(|pair| (load_rgb(&pair.rainy), load_rgb(&pair.clean)))
            .collect();
        let mut paired = Vec::new();
        for (pair, result) in pairs.iter().zip(loaded) {
            match result {
                (Ok(r), Ok(c)) if r.dimensions() == c.dimensions() && big_enough(&r) => {
                    paired.push((r, c))
                }
                (Ok(_), Ok(_)) => eprintln!(
                    "warning: skipping {}: size mismatch or too small",
                    pair.name
                ),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("warning: skipping {}: {e:#}", pair.name)
                }
            }
        }
        if clean.is_empty() && paired.is_empty() {
            bail!("no usable training images in the configured folders");
        }
        let presets = config
            .presets
            .iter()
            .filter_map(|p| RainConfig::preset(p))
            .collect();
        Ok(Self {
            clean,
            paired,
            presets,
        })
    }

    /// One (rainy, clean) patch, planar `[3, P, P]`, from `rng` alone.
    fn sample(&self, patch: usize, rng: &mut StdRng) -> (Vec<f32>, Vec<f32>) {
        let total = self.clean.len() + self.paired.len();
        let pick = rng.random_range(0..total);
        let (rainy_src, clean_src) = if pick < self.clean.len() {
            (None, &self.clean[pick])
        } else {
            let (r, c) = &self.paired[pick - self.clean.len()];
            (Some(r), c)
        };
        let x0 = rng.random_range(0..=clean_src.width() as usize - patch);
        let y0 = rng.random_range(0..=clean_src.height() as usize - patch);
        let flip = rng.random_bool(0.5);
        let crop = |img: &RgbImage| {
            let n = patch * patch;
            let mut out = vec![0f32; 3 * n];
            for y in 0..patch {
                for x in 0..patch {
                    let sx = if flip { x0 + patch - 1 - x } else { x0 + x };
                    let p = img.get_pixel(sx as u32, (y0 + y) as u32);
                    for c in 0..3 {
                        out[c * n + y * patch + x] = p[c] as f32 / 255.0;
                    }
                }
            }
            out
        };
        let clean = crop(clean_src);
        let rainy = match rainy_src {
            Some(r) => crop(r),
            None => {
                let preset = &self.presets[rng.random_range(0..self.presets.len())];
                add_rain(&clean, patch, patch, preset, rng).0
            }
        };
        (rainy, clean)
    }

    /// Batch `step` of a run with `seed`: a pure function of (seed, step), so resumed runs see
    /// exactly the batches an uninterrupted run would. Patches are made in parallel.
    pub fn batch(
        &self,
        seed: u64,
        step: usize,
        batch_size: usize,
        patch: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        use rayon::prelude::*;
        let items: Vec<(Vec<f32>, Vec<f32>)> = (0..batch_size)
            .into_par_iter()
            .map(|i| {
                self.sample(
                    patch,
                    &mut crate::synth::rng_for(seed ^ 0x5eed, (step * batch_size + i) as u64),
                )
            })
            .collect();
        let mut rainy = Vec::with_capacity(batch_size * 3 * patch * patch);
        let mut clean = Vec::with_capacity(batch_size * 3 * patch * patch);
        for (r, c) in items {
            rainy.extend(r);
            clean.extend(c);
        }
        (rainy, clean)
    }
}

/// A fixed validation set: centre crops of clean photos with seeded light and heavy rain.
pub struct Validation {
    pairs: Vec<(Vec<f32>, RgbImage)>,
}

impl Validation {
    pub fn load(config: &TrainConfig) -> Result<Self> {
        let mut pairs = Vec::new();
        let mut index = 0u64;
        for dir in &config.validation {
            for path in data::image_files(dir)? {
                let img = match load_rgb(&path) {
                    Ok(img) => img,
                    Err(e) => {
                        eprintln!(
                            "warning: skipping validation image {}: {e:#}",
                            path.display()
                        );
                        continue;
                    }
                };
                let side = config.validation_crop;
                let (w, h) = (img.width().min(side as u32), img.height().min(side as u32));
                let (x0, y0) = ((img.width() - w) / 2, (img.height() - h) / 2);
                let crop = image::imageops::crop_imm(&img, x0, y0, w, h).to_image();
                let n = (w * h) as usize;
                let mut planar = vec![0f32; 3 * n];
                for (i, p) in crop.pixels().enumerate() {
                    for c in 0..3 {
                        planar[c * n + i] = p[c] as f32 / 255.0;
                    }
                }
                let preset = if index.is_multiple_of(2) {
                    RainConfig::light()
                } else {
                    RainConfig::heavy()
                };
                let (rainy, _) = add_rain(
                    &planar,
                    w as usize,
                    h as usize,
                    &preset,
                    &mut crate::synth::rng_for(0xfa11, index),
                );
                // The rainy input is 8-bit, as a saved photo would be.
                let rainy = rainy
                    .iter()
                    .map(|&v| model::image::to_u8(v + 0.5 / 255.0) as f32 / 255.0)
                    .collect();
                pairs.push((rainy, crop));
                index += 1;
            }
        }
        Ok(Self { pairs })
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Mean Y-channel PSNR / SSIM (the paper's metric) of `net` with its configured T.
    pub fn score<B: burn::tensor::backend::Backend>(
        &self,
        net: &Brn<B>,
        device: &B::Device,
    ) -> (f64, f64) {
        let (mut psnr, mut ssim) = (0.0, 0.0);
        for (rainy, clean) in &self.pairs {
            let (w, h) = (clean.width() as usize, clean.height() as usize);
            let out = to_planar(
                net.run(
                    to_tensor::<B>(rainy.clone(), w, h, device),
                    net.config.stages,
                    false,
                )
                .background,
            );
            let (p, s) = eval::score(&out, clean.as_raw(), w, h);
            psnr += p;
            ssim += s;
        }
        let n = self.pairs.len().max(1) as f64;
        (psnr / n, ssim / n)
    }
}

/// What a checkpoint holds besides the weights and the optimizer state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainState {
    /// Steps done.
    pub step: usize,
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

fn save_checkpoint<B: AutodiffBackend, O: Optimizer<Brn<B>, B>>(
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

/// One line of the CSV log.
fn log_line(path: &Path, line: &str) -> Result<()> {
    use std::io::Write;
    let new = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write the log {}", path.display()))?;
    if new {
        writeln!(file, "epoch,step,lr,train_loss,val_psnr,val_ssim,seconds")?;
    }
    writeln!(file, "{line}").with_context(|| format!("cannot write the log {}", path.display()))?;
    Ok(())
}

/// Set by Ctrl-C: the loop saves a checkpoint and stops.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// Train from scratch (or resume from `out`'s latest checkpoint when `resume`). Stops after
/// `max_steps` steps if given (for tests and time-boxed runs). Returns the steps done.
///
/// With several `devices` each step is data-parallel: every device takes a share of the batch
/// (see [`gradients`]); the weights and the optimizer live on the first.
pub fn train<B: AutodiffBackend>(
    config: TrainConfig,
    out: &Path,
    resume: bool,
    max_steps: Option<usize>,
    devices: &[B::Device],
) -> Result<usize> {
    config.validate()?;
    let Some(device) = devices.first() else {
        bail!("no device to train on");
    };
    if config.batch_size < devices.len() {
        bail!(
            "batch_size {} is smaller than the number of devices ({}): every device needs at least one image",
            config.batch_size,
            devices.len()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut net: Brn<B> = match (&config.init, resume) {
        // Unread (lazy) parameters: the checkpoint's record fills them below.
        (_, true) => config.model.init(device)?,
        (Some(init), false) => {
            eprintln!("starting from the weights in {}", init.display());
            initial_weights(init, &config.model, device)?
        }
        (None, false) => {
            // Initial weights come from the backend's generator: seed it so that runs repeat.
            // The generator is global, so runs started together in one process (tests) take
            // turns.
            static SEEDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _turn = SEEDING.lock().unwrap_or_else(|e| e.into_inner());
            B::seed(device, config.seed);
            materialise(config.model.init(device)?)
        }
    };
    let mut optim = AdamConfig::new().init::<B, Brn<B>>();
    let mut start = 0;
    if resume {
        let Some(dir) = latest_checkpoint(out)? else {
            bail!("--resume: {} holds no checkpoint", out.display());
        };
        let state: TrainState =
            serde_json::from_str(&std::fs::read_to_string(dir.join("state.json"))?)?;
        if state.config != config {
            bail!(
                "--resume: the config differs from the one the checkpoint was trained with ({})",
                dir.join("state.json").display()
            );
        }
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        let weights = recorder
            .load(dir.join("model"), device)
            .with_context(|| format!("cannot read the training state in {}", dir.display()))?;
        net = net.load_record(weights);
        let record = NamedMpkFileRecorder::<FullPrecisionSettings>::new()
            .load(dir.join("optimizer"), device)
            .with_context(|| format!("cannot read the optimizer state in {}", dir.display()))?;
        optim = optim.load_record(record);
        start = state.step;
        eprintln!("resuming from {} (step {start})", dir.display());
    }
    std::fs::write(
        out.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )
    .with_context(|| format!("cannot write into {}", out.display()))?;

    let sources = std::sync::Arc::new(Sources::load(&config)?);
    let validation = Validation::load(&config)?;
    let total = config.epochs * config.steps_per_epoch;
    let end = max_steps.map(|m| (start + m).min(total)).unwrap_or(total);
    let batches = spawn_loader(sources, &config, start, end);
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("epoch {msg} [{bar:25}] {pos}/{len} {per_sec} (eta {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_position(start as u64);
    // The log's seconds count the whole run: a resumed run goes on from the last logged time.
    let earlier = if resume {
        crate::plot::read_log(&out.join("log.csv"))
            .ok()
            .and_then(|rows| rows.last().and_then(|row| row.seconds))
            .unwrap_or(0.0)
    } else {
        0.0
    };
    let started = Instant::now();
    let mut epoch_loss = 0.0;
    let mut epoch_steps = 0;
    let mut last_good: Option<PathBuf> = latest_checkpoint(out)?;
    for step in start..end {
        let epoch = step / config.steps_per_epoch;
        let lr = config.lr_at(epoch);
        let (rainy, clean) = batches.recv().context("the data loader stopped")?;
        let (scalar, grads) = gradients(&net, &config, (rainy, clean), devices);
        if !scalar.is_finite() {
            bar.abandon();
            bail!(
                "the loss became {scalar} at step {step}; stopped without saving. The last good checkpoint is {}",
                last_good.map(|p| p.display().to_string()).unwrap_or_else(|| "none (no checkpoint yet)".into())
            );
        }
        net = optim.step(lr, net, grads);
        epoch_loss += scalar;
        epoch_steps += 1;
        let done = step + 1;
        bar.set_position(done as u64);
        bar.set_message(format!(
            "{} loss {:.4} lr {lr:.1e}",
            epoch + 1,
            epoch_loss / epoch_steps as f64
        ));
        let epoch_end = done % config.steps_per_epoch == 0;
        let stopping = STOP.load(Ordering::SeqCst);
        if epoch_end || done % config.checkpoint_every == 0 || done == end || stopping {
            let state = TrainState {
                step: done,
                config: config.clone(),
            };
            last_good = Some(save_checkpoint(out, &net, &optim, &state)?);
        }
        if epoch_end {
            let (psnr, ssim) = if validation.is_empty() {
                (f64::NAN, f64::NAN)
            } else {
                validation.score(&net.valid(), device)
            };
            bar.suspend(|| {
                eprintln!(
                    "epoch {} step {done}: loss {:.5}, validation PSNR {psnr:.3} dB SSIM {ssim:.4}",
                    epoch + 1,
                    epoch_loss / epoch_steps as f64
                )
            });
            log_line(
                &out.join("log.csv"),
                &format!(
                    "{},{done},{lr},{},{psnr},{ssim},{:.1}",
                    epoch + 1,
                    epoch_loss / epoch_steps as f64,
                    earlier + started.elapsed().as_secs_f64()
                ),
            )?;
            // The plot is a convenience: a failure to draw it is reported, not fatal.
            let plotted = crate::plot::read_log(&out.join("log.csv")).and_then(|rows| {
                crate::plot::write_plot(&rows, config.epochs, &out.join("progress.png"))
            });
            if let Err(e) = plotted {
                bar.suspend(|| eprintln!("warning: progress.png not updated: {e:#}"));
            }
            epoch_loss = 0.0;
            epoch_steps = 0;
        }
        if stopping {
            bar.abandon_with_message("interrupted; checkpoint saved");
            return Ok(done);
        }
    }
    bar.finish();
    Ok(end)
}

/// burn draws a parameter's initial values lazily, when it is first read, and a clone of an
/// unread parameter draws its own. Read them all now, in module order, so that the initial
/// weights depend on the seed alone and every data-parallel replica copies the same values.
fn materialise<B: AutodiffBackend>(net: Brn<B>) -> Brn<B> {
    use burn::module::{ModuleVisitor, Param};
    struct Touch;
    impl<B: AutodiffBackend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    net.visit(&mut Touch);
    net
}

/// The weights a new run starts from (`init` in the config): same architecture, any T.
fn initial_weights<B: AutodiffBackend>(
    path: &Path,
    config: &BrnConfig,
    device: &B::Device,
) -> Result<Brn<B>> {
    let mut net = model::load_weights::<B>(path, config, device)
        .with_context(|| format!("init: cannot start from {}", path.display()))?;
    if net.config.clone().with_stages(config.stages) != *config {
        bail!(
            "init: {} holds a {} network, but the config trains a {}",
            path.display(),
            net.config.describe(),
            config.describe()
        );
    }
    net.config.stages = config.stages;
    Ok(net)
}

/// One step's mean loss over the batch and its gradients, on the first device.
///
/// On one device this is forward, loss and backward. On several it is data parallel in the
/// way of burn-train's multi-device strategy (optimizer on the main device): the batch is cut
/// into one shard per device, each device runs its shard through its own copy of the network
/// (`Module::fork`) on its own thread, each shard's loss is weighted by its share of the batch
/// so that the sum is the whole batch's mean, and the gradients are moved to the first device
/// (`GradientsParams::to_device`) and summed there (`GradientsAccumulator`).
pub fn gradients<B: AutodiffBackend>(
    net: &Brn<B>,
    config: &TrainConfig,
    (rainy, clean): (Vec<f32>, Vec<f32>),
    devices: &[B::Device],
) -> (f64, GradientsParams) {
    let keep_stages = matches!(config.loss, LossKind::Recursive);
    let (batch, p) = (config.batch_size, config.patch);
    let per_image = 3 * p * p;
    let shard_loss = |net: &Brn<B>, rainy: &[f32], clean: &[f32], device: &B::Device| {
        let shape = [rainy.len() / per_image, 3, p, p];
        let tensor = |v: &[f32]| {
            Tensor::<B, 4>::from_data(burn::tensor::TensorData::new(v.to_vec(), shape), device)
        };
        let rainy = tensor(rainy);
        let stages = net.run(rainy.clone(), config.model.stages, keep_stages);
        loss(config.loss, rainy, tensor(clean), stages)
    };
    if devices.len() == 1 {
        let value = shard_loss(net, &rainy, &clean, &devices[0]);
        let scalar: f64 = value.clone().into_scalar().elem();
        return (scalar, GradientsParams::from_grads(value.backward(), net));
    }
    let main = &devices[0];
    let shards = devices.len();
    let results: Vec<(f64, GradientsParams)> = std::thread::scope(|scope| {
        let handles: Vec<_> = devices
            .iter()
            .enumerate()
            .map(|(k, device)| {
                // Images k*batch/shards .. (k+1)*batch/shards: sizes differ by at most one.
                let (from, to) = (k * batch / shards, (k + 1) * batch / shards);
                let rainy = &rainy[from * per_image..to * per_image];
                let clean = &clean[from * per_image..to * per_image];
                let replica = net.clone().fork(device);
                let shard_loss = &shard_loss;
                scope.spawn(move || {
                    let share = (to - from) as f64 / batch as f64;
                    let value = shard_loss(&replica, rainy, clean, device).mul_scalar(share);
                    let scalar: f64 = value.clone().into_scalar().elem();
                    let grads = GradientsParams::from_grads(value.backward(), &replica)
                        .to_device(main, &replica);
                    (scalar, grads)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a training thread panicked"))
            .collect()
    });
    let mut total = 0.0;
    let mut accumulator = GradientsAccumulator::<Brn<B>>::new();
    for (scalar, grads) in results {
        total += scalar;
        accumulator.accumulate(net, grads);
    }
    (total, accumulator.grads())
}

/// Produce batches `start..end` on a background thread, two ahead of the training step.
fn spawn_loader(
    sources: std::sync::Arc<Sources>,
    config: &TrainConfig,
    start: usize,
    end: usize,
) -> Receiver<(Vec<f32>, Vec<f32>)> {
    let (tx, rx) = sync_channel(2);
    let (seed, batch, patch) = (config.seed, config.batch_size, config.patch);
    std::thread::spawn(move || {
        for step in start..end {
            if tx.send(sources.batch(seed, step, batch, patch)).is_err() {
                break;
            }
        }
    });
    rx
}
