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

/// Why a run stops before the last step it planned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// The next step, a validation and a checkpoint would not fit in the time limit.
    TimeLimit,
    /// Ctrl-C ([`STOP`]).
    Interrupted,
}

/// What the current epoch has gathered.
struct Epoch {
    /// Sum of the losses read back, and how many steps they cover.
    loss: f64,
    steps: usize,
    /// Time spent training, without validation and checkpoints (for images/s).
    training: Duration,
    /// Since when the clock of `training` runs.
    since: Instant,
}

impl Epoch {
    fn new() -> Self {
        Self {
            loss: 0.0,
            steps: 0,
            training: Duration::ZERO,
            since: Instant::now(),
        }
    }

    fn mean_loss(&self) -> f64 {
        self.loss / self.steps.max(1) as f64
    }
}

/// A training run in progress: everything the loop keeps between steps, with one method for
/// each thing the loop does ([`Run::step`], [`Run::checkpoint`], [`Run::end_epoch`], ...).
struct Run<'a, B: TrainBackend, O> {
    config: &'a TrainConfig,
    out: &'a Path,
    devices: &'a [B::Device],
    limits: Limits,
    net: Brn<B>,
    optim: O,
    batches: Loader,
    validation: Validation,
    bar: ProgressBar,
    /// This session's first step and the step it ends at (a limit, or the config's last).
    start: usize,
    end: usize,
    /// Steps done in all, and the learning rate of the last one.
    done: usize,
    lr: f64,
    /// When [`train`] was called (the time limit counts from it) and when stepping began.
    called: Instant,
    started: Instant,
    /// Seconds of training logged by earlier sessions of a resumed run.
    earlier: f64,
    epoch: Epoch,
    /// What the last checkpoint and the last validation cost.
    save_cost: Duration,
    validation_cost: Duration,
    last_good: Option<PathBuf>,
    pending: PendingLoss<B::InnerBackend>,
    last_read: Instant,
}

impl<'a, B: TrainBackend, O: Optimizer<Brn<B>, B>> Run<'a, B, O> {
    /// The planned steps of the run (the config's last).
    fn total(&self) -> usize {
        self.config.epochs * self.config.steps_per_epoch
    }

    /// One optimizer step on the next batch.
    fn step(mut self) -> Result<Self> {
        let step = self.done;
        self.lr = self.config.lr_at(step);
        let batch = self.batches.next()?;
        let (value, grads) = gradients(&self.net, self.config, batch, self.devices);
        self.pending.add(value);
        self.net = self.optim.step(self.lr, self.net, grads);
        self.done = step + 1;
        self.bar.set_position(self.done as u64);
        Ok(self)
    }

    /// Whether the last step ended an epoch.
    fn epoch_ended(&self) -> bool {
        self.done.is_multiple_of(self.config.steps_per_epoch)
    }

    /// Why the run should stop after the last step, if it should: Ctrl-C, or a time limit that
    /// the next step, a validation and a checkpoint (at what they have cost so far) would pass.
    fn should_stop(&self) -> Option<Stop> {
        let out_of_time = self.limits.time.is_some_and(|limit| {
            let per_step = self
                .started
                .elapsed()
                .saturating_sub(self.save_cost + self.validation_cost)
                / (self.done - self.start) as u32;
            let reserve = 2 * per_step
                + self.validation_cost
                + self.save_cost.max(Duration::from_millis(500));
            self.done < self.end && self.called.elapsed() + reserve >= limit
        });
        if out_of_time {
            Some(Stop::TimeLimit)
        } else if STOP.load(Ordering::SeqCst) {
            Some(Stop::Interrupted)
        } else {
            None
        }
    }

    /// Whether a checkpoint is due after the last step: at each epoch's end, every
    /// `checkpoint_every` steps, at the session's last step and on a stop.
    fn checkpoint_due(&self, stop: Option<Stop>) -> bool {
        self.epoch_ended()
            || self.done.is_multiple_of(self.config.checkpoint_every)
            || self.done == self.end
            || stop.is_some()
    }

    /// Read the pending losses back from the device (which waits for it) when `now`, or when
    /// the last read is [`LOSS_READ_INTERVAL`] old; the progress bar shows the epoch's mean.
    fn read_loss(&mut self, now: bool) -> Result<()> {
        if !now && self.last_read.elapsed() < LOSS_READ_INTERVAL {
            return Ok(());
        }
        let (sum, steps) = self.pending.read(self.done, &self.last_good)?;
        self.last_read = Instant::now();
        self.epoch.loss += sum;
        self.epoch.steps += steps;
        let epoch = (self.done - 1) / self.config.steps_per_epoch + 1;
        let (loss, lr) = (self.epoch.mean_loss(), self.lr);
        self.bar
            .set_message(format!("{epoch} loss {loss:.4} lr {lr:.1e}"));
        Ok(())
    }

    /// Save a checkpoint of the network, the optimizer and the step (its time is not counted
    /// as training).
    fn checkpoint(&mut self) -> Result<()> {
        self.epoch.training += self.epoch.since.elapsed();
        let saving = Instant::now();
        let state = TrainState {
            step: self.done,
            config: self.config.clone(),
        };
        self.last_good = Some(save_checkpoint(self.out, &self.net, &self.optim, &state)?);
        self.save_cost = saving.elapsed();
        self.epoch.since = Instant::now();
        Ok(())
    }

    /// The end of an epoch: validation with the paper's metric, a line on the terminal and in
    /// `log.csv`, the plot redrawn, and a new epoch begun.
    fn end_epoch(&mut self) -> Result<()> {
        let validating = Instant::now();
        let (psnr, ssim) = if self.validation.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            // In f32 whatever the training's products (`--mixed-precision`).
            model::backend::in_full_precision(|| {
                self.validation.score(&self.net.valid(), &self.devices[0])
            })
        };
        self.validation_cost = validating.elapsed();
        let epoch = self.done / self.config.steps_per_epoch;
        let (done, loss, lr) = (self.done, self.epoch.mean_loss(), self.lr);
        let images_per_second = (self.epoch.steps * self.config.batch_size) as f64
            / self.epoch.training.as_secs_f64().max(1e-9);
        self.bar.suspend(|| {
            eprintln!(
                "epoch {epoch} step {done}: loss {loss:.5}, validation PSNR {psnr:.3} dB SSIM {ssim:.4}; {images_per_second:.1} images/s (loader {:.0} patches/s, waited {:.1} s); validation {:.1} s, checkpoint {:.1} s",
                self.batches.patches_per_second(),
                self.batches.waited().as_secs_f64(),
                self.validation_cost.as_secs_f64(),
                self.save_cost.as_secs_f64(),
            )
        });
        let seconds = self.earlier + self.started.elapsed().as_secs_f64();
        log_line(
            &self.out.join("log.csv"),
            &format!(
                "{epoch},{done},{lr},{loss},{psnr},{ssim},{seconds:.1},{images_per_second:.2}"
            ),
        )?;
        // The plot is a convenience: a failure to draw it is reported, not fatal.
        let plotted = crate::plot::read_log(&self.out.join("log.csv")).and_then(|rows| {
            crate::plot::write_plot(&rows, self.config.epochs, &self.out.join("progress.svg"))
        });
        if let Err(e) = plotted {
            self.bar
                .suspend(|| eprintln!("warning: progress.svg not updated: {e:#}"));
        }
        self.epoch = Epoch::new();
        Ok(())
    }

    /// Close the progress bar for a stop, saying how to go on; returns the steps done.
    fn stop(self, why: Stop) -> usize {
        let (done, out) = (self.done, self.out.display());
        match why {
            Stop::TimeLimit => {
                self.bar.abandon_with_message(format!(
                    "time limit: stopped at step {done}; continue with --resume {out}"
                ));
                eprintln!(
                    "time limit reached after {:.0} s: checkpoint {} (step {done} of {}); continue with --resume {out}",
                    self.called.elapsed().as_secs_f64(),
                    self.last_good
                        .as_ref()
                        .expect("a checkpoint was just saved")
                        .display(),
                    self.total(),
                );
            }
            Stop::Interrupted => self
                .bar
                .abandon_with_message("interrupted; checkpoint saved"),
        }
        done
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
    let mut run = open::<B>(&config, out, resume, limits.into(), devices, called)?;
    while run.done < run.end {
        run = run.step()?;
        let stop = run.should_stop();
        let checkpoint = run.checkpoint_due(stop);
        run.read_loss(checkpoint)?;
        if checkpoint {
            run.checkpoint()?;
        }
        if run.epoch_ended() {
            run.end_epoch()?;
        }
        if let Some(why) = stop {
            return Ok(run.stop(why));
        }
    }
    run.bar.finish();
    Ok(run.done)
}

/// A run ready for its first step: the config checked, the network (new, from `init`, or from
/// the latest checkpoint), the optimizer, `config.json` written, the data loading.
fn open<'a, B: TrainBackend>(
    config: &'a TrainConfig,
    out: &'a Path,
    resume: bool,
    limits: Limits,
    devices: &'a [B::Device],
    called: Instant,
) -> Result<Run<'a, B, impl Optimizer<Brn<B>, B>>> {
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
    let mut net = first_net::<B>(config, resume, device)?;
    let mut optim = config.optimizer.init::<B, Brn<B>>();
    let mut start = 0;
    if resume {
        let state;
        (net, optim, state) = restore(out, config, net, optim, device)?;
        start = state.step;
    }
    std::fs::write(
        out.join("config.json"),
        serde_json::to_string_pretty(config)?,
    )
    .with_context(|| format!("cannot write into {}", out.display()))?;

    let sources = std::sync::Arc::new(Sources::load(config)?);
    let validation = Validation::load(config, &sources)?;
    let total = config.epochs * config.steps_per_epoch;
    let end = limits
        .max_steps
        .map(|m| (start + m).min(total))
        .unwrap_or(total);
    let batches = Loader::spawn(sources, config, start, end);
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("epoch {msg} [{bar:25}] {pos}/{len} {per_sec} (eta {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_position(start as u64);
    Ok(Run {
        config,
        out,
        devices,
        limits,
        net,
        optim,
        batches,
        validation,
        bar,
        start,
        end,
        done: start,
        lr: config.lr_at(start),
        called,
        started: Instant::now(),
        earlier: if resume { logged_seconds(out) } else { 0.0 },
        epoch: Epoch::new(),
        save_cost: Duration::ZERO,
        validation_cost: Duration::ZERO,
        last_good: latest_checkpoint(out)?,
        pending: PendingLoss::new(start),
        last_read: Instant::now(),
    })
}

/// The seconds of training the run's `log.csv` counts so far (0 without one): the log's seconds
/// count the whole run, so a resumed run goes on from there.
fn logged_seconds(out: &Path) -> f64 {
    crate::plot::read_log(&out.join("log.csv"))
        .ok()
        .and_then(|rows| rows.last().and_then(|row| row.seconds))
        .unwrap_or(0.0)
}

/// The network a run starts with: unread (lazy) parameters for a resumed run (the
/// checkpoint's record fills them), the `init` weights, or new ones from the seed.
fn first_net<B: TrainBackend>(
    config: &TrainConfig,
    resume: bool,
    device: &B::Device,
) -> Result<Brn<B>> {
    Ok(match (&config.init, resume) {
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
    })
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
