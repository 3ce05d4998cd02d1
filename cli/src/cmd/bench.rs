//! `brn bench`: time and memory of a forward pass, of training steps, or of the data loader.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use super::DeviceArgs;
use anyhow::{bail, Result};
use clap::Args;
use model::derain::{to_planar, to_tensor};
use model::{BrnBackend, BrnConfig};
use serde::Serialize;

use crate::bench;
use crate::config::TrainConfig;
use crate::device::{run_on, Job};
use crate::train::TrainBackend;

/// Arguments of `brn bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Image side in pixels [default: 512 and 1024]; with --train, the patch side [default:
    /// 64 for batch 2 and 100 for batch 12].
    #[arg(long)]
    size: Option<usize>,
    /// Stages T.
    #[arg(long, default_value_t = 6)]
    stages: usize,
    /// Timed runs (after the warm-up).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Time training steps instead (forward + SSIM loss + backward + Adam): batch 2 of 64x64
    /// and the paper's batch 12 of 100x100, at --stages T.
    #[arg(long)]
    train: bool,
    /// With --train: only this batch size (the patch is --size, or 100).
    #[arg(long)]
    batch: Option<usize>,
    /// With --train: untimed steps first (the first step compiles and autotunes GPU kernels).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Time the training data loader of this config instead: patches made per second on all
    /// cores, as a GPU run needs them.
    #[arg(long, value_name = "CONFIG")]
    loader: Option<PathBuf>,
    /// Where it runs.
    #[command(flatten)]
    device: DeviceArgs,
}

/// One forward pass's figures.
#[derive(Serialize)]
struct BenchReport {
    size: usize,
    stages: usize,
    runs: usize,
    median_s: f64,
    peak_rss_bytes: u64,
}

/// One training-step shape's figures.
#[derive(Serialize)]
struct TrainReport {
    batch: usize,
    patch: usize,
    stages: usize,
    warmup: usize,
    runs: usize,
    /// The first warm-up step alone (kernel compilation and autotuning on a GPU).
    first_step_s: f64,
    /// Mean seconds per step over the timed runs, run back to back as in training.
    seconds_per_step: f64,
    images_per_second: f64,
}

/// Run the bench the arguments ask for.
pub fn run(args: BenchArgs) -> Result<ExitCode> {
    args.device.apply();
    if args.runs == 0 || args.stages == 0 {
        bail!("--runs and --stages must be at least 1");
    }
    if args.batch == Some(0) {
        bail!("--batch must be at least 1");
    }
    if let Some(config) = &args.loader {
        return loader_bench(config, args.runs, args.json);
    }
    if args.train {
        let device = args.device.device.clone();
        return run_on(&device, args);
    }
    if args.device.device != "cpu" {
        bail!("the forward bench runs on the CPU; --device is for --train");
    }
    if args.device.mixed_precision {
        bail!("--mixed-precision is for training steps (--train); inference is always f32");
    }
    eprintln!("{}", crate::device::cpu_products());
    forward_bench(&args)
}

impl Job for BenchArgs {
    fn kernel_cache(&self) -> Option<PathBuf> {
        self.device.cache.clone()
    }

    fn run<B: BrnBackend>(self, devices: &[B::Device]) -> Result<ExitCode> {
        train_bench::<burn::backend::Autodiff<B>>(&self, &devices[0])
    }
}

fn train_bench<B: TrainBackend>(args: &BenchArgs, device: &B::Device) -> Result<ExitCode> {
    let shapes = match args.batch {
        Some(batch) => vec![(batch, args.size.unwrap_or(100))],
        None => vec![(2, 64), (12, 100)]
            .into_iter()
            .map(|(batch, patch)| (batch, args.size.unwrap_or(patch)))
            .collect(),
    };
    let mut rows = Vec::new();
    for (batch, patch) in shapes {
        let times = bench::time_train_steps::<B>(
            batch,
            patch,
            args.stages,
            args.warmup,
            args.runs,
            device,
        )?;
        let row = TrainReport {
            batch,
            patch,
            stages: args.stages,
            warmup: args.warmup,
            runs: args.runs,
            first_step_s: times.first_s,
            seconds_per_step: times.steady_s,
            images_per_second: batch as f64 / times.steady_s,
        };
        if !args.json {
            eprintln!(
                "batch {batch} of {patch}x{patch}: first step {:.2} s, then {:.3} s per step",
                row.first_step_s, row.seconds_per_step
            );
        }
        rows.push(row);
    }
    if args.json {
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        println!(
            "| batch | patch | T | first step (s) | s per step (mean of {}) | images/s |",
            args.runs
        );
        println!("|---|---|---|---|---|---|");
        for r in &rows {
            println!(
                "| {} | {} | {} | {:.2} | {:.3} | {:.2} |",
                r.batch, r.patch, r.stages, r.first_step_s, r.seconds_per_step, r.images_per_second
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn forward_bench(args: &BenchArgs) -> Result<ExitCode> {
    type B = burn_flex::Flex;
    let device = Default::default();
    let net = BrnConfig::brn()
        .with_stages(args.stages)
        .init::<B>(&device)?;
    let sizes = match args.size {
        Some(size) => vec![size],
        None => vec![512, 1024],
    };
    let mut reports = Vec::new();
    for size in sizes {
        let input: Vec<f32> = (0..3 * size * size)
            .map(|i| ((i * 2654435761usize) % 1000) as f32 / 1000.0)
            .collect();
        let mut times = Vec::new();
        let mut peak = 0u64;
        for run in 0..=args.runs {
            let tensor = to_tensor::<B>(input.clone(), size, size, &device);
            bench::reset_peak_rss();
            let start = Instant::now();
            let out = to_planar(net.run(tensor, args.stages, false).background);
            let elapsed = start.elapsed().as_secs_f64();
            std::hint::black_box(out);
            if run > 0 {
                times.push(elapsed);
                peak = peak.max(bench::peak_rss_bytes().unwrap_or(0));
            }
        }
        let report = BenchReport {
            size,
            stages: args.stages,
            runs: args.runs,
            median_s: bench::median(&mut times),
            peak_rss_bytes: peak,
        };
        if !args.json {
            eprintln!(
                "{size}x{size}: median {:.2} s, peak RSS {:.0} MiB",
                report.median_s,
                peak as f64 / (1 << 20) as f64
            );
        }
        reports.push(report);
    }
    if args.json {
        if reports.len() == 1 {
            println!("{}", serde_json::to_string(&reports[0])?);
        } else {
            println!("{}", serde_json::to_string(&reports)?);
        }
    } else {
        println!("| size | T | runs | median (s) | peak RSS (MiB) |");
        println!("|---|---|---|---|---|");
        for r in &reports {
            println!(
                "| {}x{} | {} | {} | {:.2} | {:.0} |",
                r.size,
                r.size,
                r.stages,
                r.runs,
                r.median_s,
                r.peak_rss_bytes as f64 / (1 << 20) as f64
            );
        }
        println!("threads: {} (rayon); backend: flex (CPU)", threads());
    }
    Ok(ExitCode::SUCCESS)
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Patches per second of a config's training data loader (synthesis, crops, batching), timed
/// over `batches` batches after the images are loaded.
fn loader_bench(config: &std::path::Path, batches: usize, json: bool) -> Result<ExitCode> {
    let config = TrainConfig::load(config)?;
    let started = Instant::now();
    let sources = std::sync::Arc::new(crate::data::Sources::load(&config)?);
    let load_s = started.elapsed().as_secs_f64();
    let loader = crate::loader::Loader::spawn(sources, &config, 0, batches);
    let started = Instant::now();
    for _ in 0..batches {
        loader.next()?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let patches = (batches * config.batch_size) as f64 / seconds;
    let report = serde_json::json!({
        "batch": config.batch_size, "patch": config.patch, "batches": batches,
        "threads": threads(), "load_images_s": load_s, "patches_per_second": patches,
    });
    if json {
        println!("{report}");
    } else {
        println!(
            "loader: {patches:.0} patches/s of {p}x{p} ({:.1} batches of {} per second) on {} threads; images loaded in {load_s:.1} s",
            patches / config.batch_size as f64,
            config.batch_size,
            threads(),
            p = config.patch,
        );
    }
    Ok(ExitCode::SUCCESS)
}
