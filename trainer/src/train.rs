//! The training loop: deterministic batches, Adam with the paper's schedule, atomic
//! checkpoints that resume bit for bit (on any backend), validation with the paper's metric
//! each epoch, and stops that keep the run: Ctrl-C, a step count, a time limit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use burn::module::{AutodiffModule, Module};
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use model::{Brn, BrnBackend, BrnConfig};

pub use crate::checkpoint::{latest_checkpoint, TrainState};
use crate::checkpoint::{restore, save_checkpoint};
pub use crate::config::TrainConfig;
use crate::data::{Sources, Validation};
use crate::loader::Loader;
use crate::loss::{loss, LossKind};

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
        writeln!(
            file,
            "epoch,step,lr,train_loss,val_psnr,val_ssim,seconds,images_per_second"
        )?;
    }
    writeln!(file, "{line}").with_context(|| format!("cannot write the log {}", path.display()))?;
    Ok(())
}

/// Set by Ctrl-C: the loop saves a checkpoint and stops.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// When a run stops early (besides Ctrl-C and the config's last step), keeping a checkpoint.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// Stop after this many steps of this session.
    pub max_steps: Option<usize>,
    /// Stop before this much wall time has passed since [`train`] was called, with time left
    /// for the last checkpoint: for machines held for minutes (spot or preemptible ones).
    pub time: Option<Duration>,
}

impl From<Option<usize>> for Limits {
    fn from(max_steps: Option<usize>) -> Self {
        Self {
            max_steps,
            time: None,
        }
    }
}

/// How often the loss is read back from the device for the progress bar: each read waits
/// for the device to finish all queued work, so it is not done every step.
const LOSS_READ_INTERVAL: Duration = Duration::from_secs(2);

/// A backend that trains the BRN family: autodiff over a backend that runs it (the forward and
/// backward passes on `Self`, validation on the inner backend).
pub trait TrainBackend: AutodiffBackend<InnerBackend: BrnBackend> + BrnBackend {}

impl<B> TrainBackend for B where B: AutodiffBackend<InnerBackend: BrnBackend> + BrnBackend {}

/// The losses of steps not yet read back: summed on the device, read in one go.
struct PendingLoss<B: Backend> {
    sum: Option<Tensor<B, 1>>,
    since: usize,
    steps: usize,
}

impl<B: Backend> PendingLoss<B> {
    fn new(step: usize) -> Self {
        Self {
            sum: None,
            since: step,
            steps: 0,
        }
    }

    fn add(&mut self, loss: Tensor<B, 1>) {
        self.sum = Some(match self.sum.take() {
            Some(sum) => sum + loss,
            None => loss,
        });
        self.steps += 1;
    }

    /// The sum of the pending losses and their count (waits for the device), starting anew
    /// at `next_step`. A non-finite sum is an error naming the steps and `last_good`.
    fn read(&mut self, next_step: usize, last_good: &Option<PathBuf>) -> Result<(f64, usize)> {
        let (from, steps) = (self.since, self.steps);
        let sum: f64 = match self.sum.take() {
            Some(sum) => sum.into_scalar().elem(),
            None => 0.0,
        };
        *self = Self::new(next_step);
        if !sum.is_finite() {
            bail!(
                "the loss became {sum} between steps {} and {next_step}; stopped without saving. The last good checkpoint is {}",
                from + 1,
                last_good
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "none (no checkpoint yet)".into())
            );
        }
        Ok((sum, steps))
    }
}

/// Train from scratch (or resume from `out`'s latest checkpoint when `resume`), until the
/// config's last step or one of `limits` (a step count, as `Some(n)`, or a time). Returns the
/// steps done in all.
///
/// With several `devices` each step is data-parallel: every device takes a share of the batch
/// (see [`gradients`]); the weights and the optimizer live on the first.
pub fn train<B: TrainBackend>(
    config: TrainConfig,
    out: &Path,
    resume: bool,
    limits: impl Into<Limits>,
    devices: &[B::Device],
) -> Result<usize> {
    let called = Instant::now();
    let limits = limits.into();
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
    let mut optim = config.optimizer.init::<B, Brn<B>>();
    let mut start = 0;
    if resume {
        let state;
        (net, optim, state) = restore(out, &config, net, optim, device)?;
        start = state.step;
    }
    std::fs::write(
        out.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )
    .with_context(|| format!("cannot write into {}", out.display()))?;

    let sources = std::sync::Arc::new(Sources::load(&config)?);
    let validation = Validation::load(&config)?;
    let total = config.epochs * config.steps_per_epoch;
    let end = limits
        .max_steps
        .map(|m| (start + m).min(total))
        .unwrap_or(total);
    let batches = Loader::spawn(sources, &config, start, end);
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
    // Time spent training this epoch, without validation and checkpoints (for images/s).
    let mut epoch_train = Duration::ZERO;
    let mut epoch_started = Instant::now();
    let (mut save_cost, mut validation_cost) = (Duration::ZERO, Duration::ZERO);
    let mut last_good: Option<PathBuf> = latest_checkpoint(out)?;
    let mut pending = PendingLoss::<B::InnerBackend>::new(start);
    let mut last_read = Instant::now();
    let mut done = start;
    for step in start..end {
        let epoch = step / config.steps_per_epoch;
        let lr = config.lr_at(step);
        let batch = batches.next()?;
        let (value, grads) = gradients(&net, &config, batch, devices);
        pending.add(value);
        net = optim.step(lr, net, grads);
        done = step + 1;
        bar.set_position(done as u64);
        let epoch_end = done % config.steps_per_epoch == 0;
        // With a time limit, stop now unless the next step, a validation and a checkpoint
        // still fit (from what they have cost so far).
        let out_of_time = limits.time.is_some_and(|limit| {
            let per_step = started
                .elapsed()
                .saturating_sub(save_cost + validation_cost)
                / (done - start) as u32;
            let reserve =
                2 * per_step + validation_cost + save_cost.max(Duration::from_millis(500));
            done < end && called.elapsed() + reserve >= limit
        });
        let stopping = STOP.load(Ordering::SeqCst) || out_of_time;
        let checkpoint_due =
            epoch_end || done % config.checkpoint_every == 0 || done == end || stopping;
        if checkpoint_due || last_read.elapsed() >= LOSS_READ_INTERVAL {
            let (sum, steps) = pending.read(done, &last_good)?;
            last_read = Instant::now();
            epoch_loss += sum;
            epoch_steps += steps;
            bar.set_message(format!(
                "{} loss {:.4} lr {lr:.1e}",
                epoch + 1,
                epoch_loss / epoch_steps.max(1) as f64
            ));
        }
        if checkpoint_due {
            epoch_train += epoch_started.elapsed();
            let saving = Instant::now();
            let state = TrainState {
                step: done,
                config: config.clone(),
            };
            last_good = Some(save_checkpoint(out, &net, &optim, &state)?);
            save_cost = saving.elapsed();
            epoch_started = Instant::now();
        }
        if epoch_end {
            let validating = Instant::now();
            let (psnr, ssim) = if validation.is_empty() {
                (f64::NAN, f64::NAN)
            } else {
                validation.score(&net.valid(), device)
            };
            validation_cost = validating.elapsed();
            let images_per_second =
                (epoch_steps * config.batch_size) as f64 / epoch_train.as_secs_f64().max(1e-9);
            bar.suspend(|| {
                eprintln!(
                    "epoch {} step {done}: loss {:.5}, validation PSNR {psnr:.3} dB SSIM {ssim:.4}; {images_per_second:.1} images/s (loader {:.0} patches/s, waited {:.1} s); validation {:.1} s, checkpoint {:.1} s",
                    epoch + 1,
                    epoch_loss / epoch_steps as f64,
                    batches.patches_per_second(),
                    batches.waited().as_secs_f64(),
                    validation_cost.as_secs_f64(),
                    save_cost.as_secs_f64(),
                )
            });
            log_line(
                &out.join("log.csv"),
                &format!(
                    "{},{done},{lr},{},{psnr},{ssim},{:.1},{images_per_second:.2}",
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
            epoch_train = Duration::ZERO;
            epoch_started = Instant::now();
        }
        if out_of_time {
            bar.abandon_with_message(format!(
                "time limit: stopped at step {done}; continue with --resume {}",
                out.display()
            ));
            eprintln!(
                "time limit reached after {:.0} s: checkpoint {} (step {done} of {total}); continue with --resume {}",
                called.elapsed().as_secs_f64(),
                last_good.as_ref().expect("a checkpoint was just saved").display(),
                out.display()
            );
            return Ok(done);
        }
        if stopping {
            bar.abandon_with_message("interrupted; checkpoint saved");
            return Ok(done);
        }
    }
    bar.finish();
    Ok(done)
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
pub fn gradients<B: TrainBackend>(
    net: &Brn<B>,
    config: &TrainConfig,
    (rainy, clean): (Vec<f32>, Vec<f32>),
    devices: &[B::Device],
) -> (Tensor<B::InnerBackend, 1>, GradientsParams) {
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
        return (
            value.clone().inner(),
            GradientsParams::from_grads(value.backward(), net),
        );
    }
    let main = &devices[0];
    let shards = devices.len();
    let results: Vec<(Tensor<B::InnerBackend, 1>, GradientsParams)> = std::thread::scope(|scope| {
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
                    let shard = value.clone().inner().to_device(main);
                    let grads = GradientsParams::from_grads(value.backward(), &replica)
                        .to_device(main, &replica);
                    (shard, grads)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a training thread panicked"))
            .collect()
    });
    let mut total: Option<Tensor<B::InnerBackend, 1>> = None;
    let mut accumulator = GradientsAccumulator::<Brn<B>>::new();
    for (shard, grads) in results {
        total = Some(match total {
            Some(sum) => sum + shard,
            None => shard,
        });
        accumulator.accumulate(net, grads);
    }
    (total.expect("at least one device"), accumulator.grads())
}
