//! `brn`: derain images, score weights with the paper's metrics, and benchmark the network.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::tensor::backend::Backend;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use model::derain::{to_planar, to_tensor};
use model::image::{encode_png, to_u8};
use model::{BrnConfig, DerainOptions, Picture};
use serde::Serialize;
use trainer::{bench, data, eval};

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
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// Weights: our record (.safetensors, config inside or config.json beside) or an authors' .pth.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Derain(args) => with_device(&args.model.device.clone(), Run::Derain(args)),
        Command::Eval(args) => with_device(&args.model.device.clone(), Run::Eval(args)),
        Command::Bench(args) => bench_command(args),
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
}

fn with_device(device: &str, run: Run) -> Result<ExitCode> {
    match device {
        "cpu" => dispatch::<burn_flex::Flex>(run, Default::default()),
        d if d.starts_with("cuda") => cuda(d, run),
        other => bail!("unknown device '{other}': use cpu or cuda:N"),
    }
}

#[cfg(feature = "cuda")]
fn cuda(device: &str, run: Run) -> Result<ExitCode> {
    let index = match device.strip_prefix("cuda:") {
        Some(n) => n
            .parse()
            .with_context(|| format!("bad device '{device}': use cuda:N"))?,
        None => 0,
    };
    dispatch::<burn_cuda::Cuda>(run, burn_cuda::CudaDevice::new(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(device: &str, _run: Run) -> Result<ExitCode> {
    bail!("'{device}': this build has no CUDA support; rebuild with `cargo build --release -p trainer --features cuda`")
}

fn dispatch<B: Backend>(run: Run, device: B::Device) -> Result<ExitCode> {
    match run {
        Run::Derain(args) => derain_command::<B>(args, &device),
        Run::Eval(args) => eval_command::<B>(args, &device),
    }
}

/// The model the arguments ask for.
fn load_model<B: Backend>(args: &ModelArgs, device: &B::Device) -> Result<(model::Brn<B>, usize)> {
    let config = BrnConfig::preset(&args.arch)?;
    let Some(path) = &args.weights else {
        bail!(
            "this project has no default weights yet; pass --weights FILE, e.g. --weights ../shared/weights/brn/Rain100L.pth"
        );
    };
    let model = model::load_weights::<B>(path, &config, device)?;
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
}

/// Derain an 8-bit image whole and score it as the paper does.
fn score_pair<B: Backend>(
    net: &model::Brn<B>,
    stages: usize,
    pair: &data::Pair,
    device: &B::Device,
) -> Result<Score> {
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
    let out = to_planar(
        net.run(to_tensor::<B>(planar, w, h, device), stages, false)
            .background,
    );
    let derained: Vec<u8> = (0..n)
        .flat_map(|i| [0, 1, 2].map(|c| to_u8(out[c * n + i])))
        .collect();
    let (y_out, y_gt) = (eval::luminance(&derained), eval::luminance(clean.as_raw()));
    Ok(Score {
        name: pair.name.clone(),
        psnr: eval::psnr(&y_out, &y_gt),
        ssim: eval::ssim(&y_out, &y_gt, w, h),
    })
}

fn eval_command<B: Backend>(args: EvalArgs, device: &B::Device) -> Result<ExitCode> {
    let (net, stages) = load_model::<B>(&args.model, device)?;
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
    let mut images = Vec::new();
    for pair in &pairs {
        let score = score_pair(&net, stages, pair, device)?;
        if !args.json {
            bar.suspend(|| println!("{:<16} {:>8.4} {:>8.5}", score.name, score.psnr, score.ssim));
        }
        images.push(score);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let count = images.len() as f64;
    let mean = Mean {
        psnr: images.iter().map(|s| s.psnr).sum::<f64>() / count,
        ssim: images.iter().map(|s| s.ssim).sum::<f64>() / count,
    };
    if args.json {
        println!("{}", serde_json::to_string(&EvalReport { images, mean })?);
    } else {
        println!(
            "mean over {}: psnr {:.4} ssim {:.5} (T = {stages})",
            count, mean.psnr, mean.ssim
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

fn bench_command(args: BenchArgs) -> Result<ExitCode> {
    type B = burn_flex::Flex;
    if args.runs == 0 || args.stages == 0 {
        bail!("--runs and --stages must be at least 1");
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
