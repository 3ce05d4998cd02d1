//! `brn`: derain images, score weights with the paper's metrics, and benchmark the network.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::tensor::backend::Backend;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use model::derain::{to_planar, to_tensor};
use model::image::encode_png;
use model::{BrnConfig, DerainOptions, Picture};
use serde::Serialize;
use trainer::{bench, data, eval, synth};

#[derive(Parser)]
#[command(
    name = "brn",
    version,
    about = "BRN single-image deraining (Ren et al., TIP 2020)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Derain image files or folders of images; writes PNGs of the input's pixel size.
    Derain(DerainArgs),
    /// Score weights on a paired test set with the paper's Y-channel PSNR/SSIM.
    Eval(EvalArgs),
    /// Time and peak memory of one forward pass (BRN, random weights) on the CPU.
    Bench(BenchArgs),
    /// Make rainy/clean training pairs from clean photos (writes OUT/rainy/NAME + OUT/clean/NAME).
    Synth(SynthArgs),
    /// Train any member of the family from a JSON config (see README), with checkpoints and resume.
    Train(TrainArgs),
    /// Write the inference-only record of a training run's latest checkpoint (what the page embeds).
    Export(ExportArgs),
}

#[derive(Args)]
struct TrainArgs {
    /// JSON training config (saved as config.json in the output folder).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output folder for checkpoints, log.csv and config.json.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Continue the run in this folder from its latest checkpoint (its config.json unless --config).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Stop after this many steps (a time-boxed run; continue later with --resume).
    #[arg(long)]
    max_steps: Option<usize>,
    /// Override: epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override: steps per epoch.
    #[arg(long)]
    steps_per_epoch: Option<usize>,
    /// Override: batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Override: patch side in pixels.
    #[arg(long)]
    patch: Option<usize>,
    /// Override: learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Override: random seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override: stages T.
    #[arg(long)]
    stages: Option<usize>,
    /// Start a new run from these weights (our record or an authors' .pth of the same
    /// architecture) with a fresh optimizer.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Device: cpu, cuda:N in a build with the `cuda` feature, or several CUDA devices
    /// (cuda:0,cuda:1) to train data-parallel.
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args)]
struct ExportArgs {
    /// A training output folder (its latest checkpoint) or one checkpoint folder.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The record to write (.safetensors; its config.json is written beside it).
    #[arg(short, long)]
    output: PathBuf,
    /// Store float16 (half the download; outputs change by about 1e-3).
    #[arg(long)]
    f16: bool,
}

#[derive(Args)]
struct SynthArgs {
    /// Folder of clean photos.
    #[arg(long)]
    clean: PathBuf,
    /// Output folder: rainy/ and clean/ with equal file names (the layout `eval --data` reads).
    #[arg(short, long)]
    output: PathBuf,
    /// Rain preset.
    #[arg(long, default_value = "light", value_parser = ["light", "heavy"])]
    preset: String,
    /// Number of pairs [default: one per clean photo].
    #[arg(long)]
    count: Option<usize>,
    /// Random seed: the same seed makes the same pairs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// Weights: our record (.safetensors, config inside or config.json beside) or an authors'
    /// .pth [default: the built-in BRN weights described in WEIGHTS.md].
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Architecture of an authors' .pth (our records carry their own).
    #[arg(long, default_value = "brn", value_parser = clap::builder::PossibleValuesParser::new(BrnConfig::PRESETS))]
    arch: String,
    /// Number of stages T [default: the architecture's, 8 for BRN and 6 for PReNet/PRN].
    #[arg(long)]
    stages: Option<usize>,
    /// Device: cpu, or cuda:N in a build with the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args)]
struct DerainArgs {
    /// Image files and/or folders of images.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder (created if missing).
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Also write the extracted rain layer as NAME_rain.png.
    #[arg(long)]
    rain_layer: bool,
    /// Also write every stage's estimates as NAME_stageT_x.png (and _r.png).
    #[arg(long)]
    all_stages: bool,
    /// Largest tile side in pixels: bounds peak memory; larger images are processed in overlapping tiles.
    #[arg(long, default_value_t = 512)]
    tile: usize,
}

#[derive(Args)]
struct EvalArgs {
    /// Test set: DIR/rainy/rain-N.png + DIR/norain-N.png (Rain100L), or DIR/rainy/X + DIR/clean/X.
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Score only the first N pairs.
    #[arg(long)]
    limit: Option<usize>,
    /// Also score these earlier stage counts from the same run (e.g. 6 with --stages 8): a
    /// T'-stage run's output is exactly the T'-th stage of a longer run.
    #[arg(long, value_delimiter = ',')]
    also_stages: Vec<usize>,
}

#[derive(Args)]
struct BenchArgs {
    /// Image side in pixels [default: 512 and 1024].
    #[arg(long)]
    size: Option<usize>,
    /// Stages T.
    #[arg(long, default_value_t = 6)]
    stages: usize,
    /// Timed runs (one warm-up run is not counted).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Time training steps instead (forward + SSIM loss + backward + Adam): batch 2 of 64x64
    /// and the paper's batch 12 of 100x100, at --stages T.
    #[arg(long)]
    train: bool,
    /// Device for --train: cpu, or cuda:N in a build with the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Derain(args) => with_device(&args.model.device.clone(), Run::Derain(args)),
        Command::Eval(args) => with_device(&args.model.device.clone(), Run::Eval(args)),
        Command::Bench(args) => bench_command(args),
        Command::Synth(args) => synth_command(args),
        Command::Train(args) => train_command(args),
        Command::Export(args) => export_command(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

enum Run {
    Derain(DerainArgs),
    Eval(EvalArgs),
    Train(Box<TrainJob>),
    TrainBench(BenchArgs),
}

/// A checked training request.
struct TrainJob {
    config: trainer::train::TrainConfig,
    out: PathBuf,
    resume: bool,
    max_steps: Option<usize>,
}

/// What `--device` names: the CPU, or one or more CUDA devices by index.
#[derive(Debug, PartialEq)]
enum Devices {
    Cpu,
    Cuda(Vec<usize>),
}

/// Parse `cpu`, `cuda` (device 0), `cuda:N`, or a comma-separated list of CUDA devices
/// (`cuda:0,cuda:1`) for data-parallel training.
fn parse_devices(text: &str) -> Result<Devices> {
    let help = "use cpu, cuda:N, or a list such as cuda:0,cuda:1";
    if text == "cpu" {
        return Ok(Devices::Cpu);
    }
    let mut indices = Vec::new();
    for part in text.split(',').map(str::trim) {
        let index = match part.strip_prefix("cuda") {
            Some("") => 0,
            Some(rest) => rest
                .strip_prefix(':')
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("bad device '{part}': {help}"))?,
            None if part == "cpu" => bail!("'{text}': the CPU trains alone; {help}"),
            None => bail!("unknown device '{part}': {help}"),
        };
        if indices.contains(&index) {
            bail!("'{text}' names cuda:{index} twice");
        }
        indices.push(index);
    }
    Ok(Devices::Cuda(indices))
}

fn with_device(device: &str, run: Run) -> Result<ExitCode> {
    let devices = parse_devices(device)?;
    let several = matches!(&devices, Devices::Cuda(list) if list.len() > 1);
    if several && matches!(run, Run::Derain(_) | Run::Eval(_)) {
        bail!("'{device}': derain and eval run on one device; several devices are for training");
    }
    match devices {
        Devices::Cpu => dispatch::<burn_flex::Flex>(run, vec![Default::default()]),
        Devices::Cuda(indices) => cuda(indices, run),
    }
}

#[cfg(feature = "cuda")]
fn cuda(indices: Vec<usize>, run: Run) -> Result<ExitCode> {
    check_cuda(&indices)?;
    let devices = indices
        .into_iter()
        .map(burn_cuda::CudaDevice::new)
        .collect();
    dispatch::<burn_cuda::Cuda>(run, devices)
}

/// Fail with a clear message, instead of a panic deep inside burn-cuda, when the driver or
/// NVRTC cannot be loaded or a device index does not exist.
#[cfg(feature = "cuda")]
fn check_cuda(indices: &[usize]) -> Result<()> {
    use cudarc::driver::result;
    // SAFETY: these only dlopen the libraries, as burn-cuda does on first use.
    let (driver, nvrtc) = unsafe {
        (
            cudarc::driver::sys::is_culib_present(),
            cudarc::nvrtc::sys::is_culib_present(),
        )
    };
    if !driver {
        bail!("CUDA is not available: the NVIDIA driver library (libcuda.so) was not found; install the driver, or add its folder to LD_LIBRARY_PATH");
    }
    if !nvrtc {
        bail!("CUDA's runtime compiler (libnvrtc.so) was not found; install the CUDA toolkit, or add its lib64 folder to LD_LIBRARY_PATH");
    }
    result::init().map_err(|e| anyhow::anyhow!("the CUDA driver did not start: {e:?}"))?;
    let count = result::device::get_count()
        .map_err(|e| anyhow::anyhow!("cannot count CUDA devices: {e:?}"))? as usize;
    if let Some(missing) = indices.iter().find(|&&i| i >= count) {
        bail!("cuda:{missing} does not exist: this machine has {count} CUDA device(s)");
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn cuda(_indices: Vec<usize>, _run: Run) -> Result<ExitCode> {
    bail!("this build has no CUDA support; rebuild with `cargo build --release -p trainer --features cuda`")
}

fn dispatch<B: Backend>(run: Run, devices: Vec<B::Device>) -> Result<ExitCode> {
    type Train<B> = burn::backend::Autodiff<B>;
    let device = &devices[0];
    match run {
        Run::Derain(args) => derain_command::<B>(args, device),
        Run::Eval(args) => eval_command::<B>(args, device),
        Run::TrainBench(args) => train_bench::<Train<B>>(&args, device),
        Run::Train(job) => {
            let steps = trainer::train::train::<Train<B>>(
                job.config,
                &job.out,
                job.resume,
                job.max_steps,
                &devices,
            )?;
            eprintln!(
                "trained to step {steps}; checkpoints in {}",
                job.out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The project's default weights (see WEIGHTS.md), built into the binary so that it derains
/// out of the box wherever it is copied.
const DEFAULT_WEIGHTS: &[u8] = include_bytes!("../../weights/brn-default.safetensors");

/// The model the arguments ask for.
fn load_model<B: Backend>(args: &ModelArgs, device: &B::Device) -> Result<(model::Brn<B>, usize)> {
    let config = BrnConfig::preset(&args.arch)?;
    let model = match &args.weights {
        Some(path) => model::load_weights::<B>(path, &config, device)?,
        None if args.arch == "brn" => model::weights::load_weights_bytes::<B>(
            DEFAULT_WEIGHTS.to_vec(),
            &config,
            None,
            "the built-in default weights",
            device,
        )?,
        None => bail!(
            "the built-in default weights are BRN's; pass --weights FILE for --arch {}",
            args.arch
        ),
    };
    let stages = args.stages.unwrap_or(model.config.stages);
    if stages == 0 {
        bail!("--stages must be at least 1");
    }
    Ok((model, stages))
}

fn read_picture(path: &Path) -> Result<Picture> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    model::decode(&bytes).with_context(|| format!("{}", path.display()))
}

fn derain_command<B: Backend>(args: DerainArgs, device: &B::Device) -> Result<ExitCode> {
    if args.tile < 16 {
        bail!("--tile must be at least 16 pixels");
    }
    let (net, stages) = load_model::<B>(&args.model, device)?;
    let mut inputs = Vec::new();
    for input in &args.inputs {
        if input.is_dir() {
            inputs.extend(data::image_files(input)?);
        } else {
            inputs.push(input.clone());
        }
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create output folder {}", args.output.display()))?;
    let probe = args
        .output
        .join(format!(".brn-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("output folder {} is not writable", args.output.display()))?;
    let _ = std::fs::remove_file(&probe);

    let options = DerainOptions {
        rain_layer: args.rain_layer,
        all_stages: args.all_stages,
        tile: args.tile,
        ..DerainOptions::new(stages)
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] tile {pos}/{len} {elapsed} (eta {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut failed = Vec::new();
    let mut written = 0usize;
    for input in &inputs {
        let name = input
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        bar.set_message(name.clone());
        let result = (|| -> Result<()> {
            let picture = read_picture(input)?;
            let plan_tiles = model::tiling::TilePlan::new(
                picture.width,
                picture.height,
                options.tile,
                options.overlap,
            )
            .tiles
            .len();
            bar.set_length(plan_tiles as u64);
            bar.set_position(0);
            bar.reset_eta();
            let out = model::derain(&net, &picture, &options, device, |done, _| {
                bar.set_position(done as u64);
                true
            })?;
            let mut files = vec![(format!("{name}.png"), out.background)];
            if let Some(rain) = out.rain {
                files.push((format!("{name}_rain.png"), rain));
            }
            for (t, x) in out.background_stages.into_iter().enumerate() {
                files.push((format!("{name}_stage{}_x.png", t + 1), x));
            }
            for (t, r) in out.rain_stages.into_iter().enumerate() {
                files.push((format!("{name}_stage{}_r.png", t + 1), r));
            }
            for (file, pixels) in files {
                let png = encode_png(&pixels, &picture)?;
                model::io::write_atomic(&args.output.join(file), &png)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => written += 1,
            Err(e) => {
                bar.suspend(|| eprintln!("skipped {}: {e:#}", input.display()));
                failed.push(input.clone());
            }
        }
    }
    bar.finish_and_clear();
    eprintln!(
        "derained {written} of {} image(s) into {}",
        inputs.len(),
        args.output.display()
    );
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("failed ({}):", failed.len());
        for f in &failed {
            eprintln!("  {}", f.display());
        }
        Ok(ExitCode::from(1))
    }
}

#[derive(Serialize)]
struct Score {
    name: String,
    psnr: f64,
    ssim: f64,
    /// The rainy input's own score against the clean image (what deraining starts from).
    input_psnr: f64,
    input_ssim: f64,
}

#[derive(Serialize)]
struct Mean {
    psnr: f64,
    ssim: f64,
}

#[derive(Serialize)]
struct EvalReport {
    images: Vec<Score>,
    mean: Mean,
    /// Mean score of the rainy inputs themselves.
    input: Mean,
    /// Means of the earlier stages asked for with --also-stages, by stage count.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    also: std::collections::BTreeMap<String, Mean>,
}

/// Y-channel PSNR (dB) and SSIM of one image.
type PsnrSsim = (f64, f64);

/// Derain an 8-bit image whole and score it as the paper does, after each stage in `stages`
/// (ascending; the run has as many stages as the last). Also returns the rainy input's score.
fn score_pair<B: Backend>(
    net: &model::Brn<B>,
    stages: &[usize],
    pair: &data::Pair,
    device: &B::Device,
) -> Result<(PsnrSsim, Vec<PsnrSsim>)> {
    let rainy = image::open(&pair.rainy)
        .with_context(|| format!("{}", pair.rainy.display()))?
        .to_rgb8();
    let clean = image::open(&pair.clean)
        .with_context(|| format!("{}", pair.clean.display()))?
        .to_rgb8();
    if rainy.dimensions() != clean.dimensions() {
        bail!("{}: rainy and clean images differ in size", pair.name);
    }
    let (w, h) = (rainy.width() as usize, rainy.height() as usize);
    let n = w * h;
    let mut planar = vec![0f32; 3 * n];
    for (i, p) in rainy.pixels().enumerate() {
        for c in 0..3 {
            planar[c * n + i] = p[c] as f32 / 255.0;
        }
    }
    let input_score = eval::score(&planar, clean.as_raw(), w, h);
    let last = *stages.last().expect("at least one stage count");
    let input = to_tensor::<B>(planar, w, h, device);
    let outputs = if stages.len() == 1 {
        vec![net.run(input, last, false).background]
    } else {
        // A T'-stage run is the first T' stages of a longer one: score them all from one run.
        let all = net.run(input, last, true).background_stages;
        stages.iter().map(|&t| all[t - 1].clone()).collect()
    };
    let scores = outputs
        .into_iter()
        .map(|out| eval::score(&to_planar(out), clean.as_raw(), w, h))
        .collect();
    Ok((input_score, scores))
}

fn mean_of(scores: &[(f64, f64)]) -> Mean {
    let count = scores.len() as f64;
    Mean {
        psnr: scores.iter().map(|s| s.0).sum::<f64>() / count,
        ssim: scores.iter().map(|s| s.1).sum::<f64>() / count,
    }
}

fn eval_command<B: Backend>(args: EvalArgs, device: &B::Device) -> Result<ExitCode> {
    let (net, stages) = load_model::<B>(&args.model, device)?;
    let mut counts: Vec<usize> = args
        .also_stages
        .iter()
        .copied()
        .filter(|&t| t < stages)
        .collect();
    if counts.len() != args.also_stages.len() || counts.contains(&0) {
        bail!("--also-stages takes stage counts from 1 to T - 1 (T = {stages})");
    }
    counts.sort_unstable();
    counts.dedup();
    counts.push(stages);
    let mut pairs = data::pairs(&args.data)?;
    if let Some(limit) = args.limit {
        pairs.truncate(limit);
    }
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(pairs.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("eval [{bar:30}] {pos}/{len} {elapsed} (eta {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut per_count: Vec<Vec<(f64, f64)>> = vec![Vec::new(); counts.len()];
    let mut inputs = Vec::new();
    for pair in &pairs {
        let (input, scores) = score_pair(&net, &counts, pair, device)?;
        inputs.push(input);
        if !args.json {
            let line: Vec<String> = scores
                .iter()
                .map(|(p, s)| format!("{p:>8.4} {s:>8.5}"))
                .collect();
            bar.suspend(|| println!("{:<16} {}", pair.name, line.join("   ")));
        }
        for (all, score) in per_count.iter_mut().zip(scores) {
            all.push(score);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let finals = per_count.pop().expect("the final stage count");
    let mean = mean_of(&finals);
    let input = mean_of(&inputs);
    let also: std::collections::BTreeMap<String, Mean> = counts
        .iter()
        .zip(&per_count)
        .map(|(t, scores)| (t.to_string(), mean_of(scores)))
        .collect();
    if args.json {
        let images = pairs
            .iter()
            .zip(finals)
            .zip(&inputs)
            .map(|((pair, (psnr, ssim)), &(input_psnr, input_ssim))| Score {
                name: pair.name.clone(),
                psnr,
                ssim,
                input_psnr,
                input_ssim,
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string(&EvalReport {
                images,
                mean,
                input,
                also
            })?
        );
    } else {
        println!(
            "mean over {}: psnr {:.4} ssim {:.5} (the rainy inputs)",
            pairs.len(),
            input.psnr,
            input.ssim
        );
        for (t, m) in &also {
            println!(
                "mean over {}: psnr {:.4} ssim {:.5} (T = {t})",
                pairs.len(),
                m.psnr,
                m.ssim
            );
        }
        println!(
            "mean over {}: psnr {:.4} ssim {:.5} (T = {stages})",
            pairs.len(),
            mean.psnr,
            mean.ssim
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct BenchReport {
    size: usize,
    stages: usize,
    runs: usize,
    median_s: f64,
    peak_rss_bytes: u64,
}

fn train_bench<B: burn::tensor::backend::AutodiffBackend>(
    args: &BenchArgs,
    device: &B::Device,
) -> Result<ExitCode> {
    let mut rows = Vec::new();
    for (batch, patch) in [(2, 64), (12, 100)] {
        let patch = args.size.unwrap_or(patch);
        let seconds =
            trainer::train::time_steps::<B>(batch, patch, args.stages, args.runs, device)?;
        if !args.json {
            eprintln!("batch {batch} of {patch}x{patch}: {seconds:.2} s per step");
        }
        rows.push(serde_json::json!({
            "batch": batch, "patch": patch, "stages": args.stages, "runs": args.runs,
            "seconds_per_step": seconds, "images_per_second": batch as f64 / seconds,
        }));
    }
    if args.json {
        println!("{}", serde_json::Value::Array(rows));
    } else {
        println!(
            "| batch | patch | T | s per step (median of {}) | images/s |",
            args.runs
        );
        println!("|---|---|---|---|---|");
        for r in &rows {
            println!(
                "| {} | {} | {} | {:.2} | {:.2} |",
                r["batch"],
                r["patch"],
                r["stages"],
                r["seconds_per_step"].as_f64().unwrap_or(0.0),
                r["images_per_second"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_command(args: BenchArgs) -> Result<ExitCode> {
    type B = burn_flex::Flex;
    if args.runs == 0 || args.stages == 0 {
        bail!("--runs and --stages must be at least 1");
    }
    if args.train {
        let device = args.device.clone();
        return with_device(&device, Run::TrainBench(args));
    }
    if args.device != "cpu" {
        bail!("the forward bench runs on the CPU; --device is for --train");
    }
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
        println!(
            "threads: {} (rayon); backend: flex (CPU)",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn synth_command(args: SynthArgs) -> Result<ExitCode> {
    let config = synth::RainConfig::preset(&args.preset).expect("clap checked the preset");
    let photos = data::image_files(&args.clean)?;
    if photos.is_empty() {
        bail!("{} holds no images", args.clean.display());
    }
    let (rainy_dir, clean_dir) = (args.output.join("rainy"), args.output.join("clean"));
    for dir in [&rainy_dir, &clean_dir] {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output folder {}", dir.display()))?;
    }
    let count = args.count.unwrap_or(photos.len());
    let bar = ProgressBar::new(count as u64);
    let mut failed = 0;
    for index in 0..count {
        let photo = &photos[index % photos.len()];
        let result = (|| -> Result<()> {
            let mut picture = read_picture(photo)?;
            picture.alpha = None;
            picture.gray = false;
            picture.depth = model::image::BitDepth::Eight;
            let mut rng = synth::rng_for(args.seed, index as u64);
            let (rainy, _) = synth::add_rain(
                &picture.rgb,
                picture.width,
                picture.height,
                &config,
                &mut rng,
            );
            let stem = photo
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            let name = format!("{stem}_{index:05}.png");
            model::io::write_atomic(&clean_dir.join(&name), &encode_png(&picture.rgb, &picture)?)?;
            model::io::write_atomic(&rainy_dir.join(&name), &encode_png(&rainy, &picture)?)?;
            Ok(())
        })();
        if let Err(e) = result {
            bar.suspend(|| eprintln!("skipped {}: {e:#}", photo.display()));
            failed += 1;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "wrote {} pair(s) ({} preset, seed {}) into {}",
        count - failed,
        args.preset,
        args.seed,
        args.output.display()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn train_command(args: TrainArgs) -> Result<ExitCode> {
    let (out, resume) = match (&args.resume, &args.output) {
        (Some(dir), None) => (dir.clone(), true),
        (None, Some(dir)) => (dir.clone(), false),
        (Some(_), Some(_)) => {
            bail!("give either --output (a new run) or --resume DIR (continue one), not both")
        }
        (None, None) => bail!("give --output DIR for a new run, or --resume DIR to continue one"),
    };
    let config_path = match (&args.config, resume) {
        (Some(path), _) => path.clone(),
        (None, true) => out.join("config.json"),
        (None, false) => bail!("a new run needs --config FILE"),
    };
    let mut config = trainer::train::TrainConfig::load(&config_path)?;
    if let Some(v) = args.epochs {
        config.epochs = v;
    }
    if let Some(v) = args.steps_per_epoch {
        config.steps_per_epoch = v;
    }
    if let Some(v) = args.batch_size {
        config.batch_size = v;
    }
    if let Some(v) = args.patch {
        config.patch = v;
    }
    if let Some(v) = args.lr {
        config.lr = v;
    }
    if let Some(v) = args.seed {
        config.seed = v;
    }
    if let Some(v) = args.stages {
        config.model.stages = v;
    }
    if let Some(path) = args.init {
        if resume {
            bail!("--init starts a new run; a resumed run continues from its checkpoint");
        }
        config.init = Some(path);
    }
    config.validate()?;
    let _ = ctrlc::set_handler(|| {
        eprintln!("\nstopping: saving a checkpoint after this step (Ctrl-C again to abort)");
        if trainer::train::STOP.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    let job = TrainJob {
        config,
        out,
        resume,
        max_steps: args.max_steps,
    };
    with_device(&args.device, Run::Train(Box::new(job)))
}

fn export_command(args: ExportArgs) -> Result<ExitCode> {
    type B = burn_flex::Flex;
    let device = Default::default();
    let dir = trainer::train::latest_checkpoint(&args.checkpoint)?
        .unwrap_or_else(|| args.checkpoint.clone());
    let record = dir.join("model.safetensors");
    if !record.is_file() {
        bail!(
            "{} holds no checkpoint (no latest.json, no model.safetensors)",
            args.checkpoint.display()
        );
    }
    let state: trainer::train::TrainState = serde_json::from_str(
        &std::fs::read_to_string(dir.join("state.json"))
            .with_context(|| format!("{} has no state.json", dir.display()))?,
    )?;
    let net = model::load_weights::<B>(&record, &state.config.model, &device)?;
    let precision = if args.f16 {
        model::Precision::F16
    } else {
        model::Precision::F32
    };
    model::save_record(&net, &args.output, precision)?;
    // Check that what was written loads and computes the same function.
    let back = model::load_weights::<B>(&args.output, &state.config.model, &device)?;
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
        "exported {} (step {}, {}) to {} ({:.2} MB) and its config.json",
        dir.display(),
        state.step,
        state.config.model.describe(),
        args.output.display(),
        size as f64 / 1e6
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::{parse_devices, Devices};

    #[test]
    fn device_lists_parse_and_bad_ones_are_named() {
        assert_eq!(parse_devices("cpu").unwrap(), Devices::Cpu);
        assert_eq!(parse_devices("cuda").unwrap(), Devices::Cuda(vec![0]));
        assert_eq!(parse_devices("cuda:3").unwrap(), Devices::Cuda(vec![3]));
        assert_eq!(
            parse_devices("cuda:0, cuda:1").unwrap(),
            Devices::Cuda(vec![0, 1])
        );
        for (bad, needle) in [
            ("gpu", "unknown device 'gpu'"),
            ("cuda:x", "bad device 'cuda:x'"),
            ("cuda0", "bad device 'cuda0'"),
            ("cuda:1,cuda:1", "twice"),
            ("cpu,cuda:0", "the CPU trains alone"),
        ] {
            let err = parse_devices(bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
