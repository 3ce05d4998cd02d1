//! `brn eval`: score weights on a paired test set with the paper's Y-channel PSNR/SSIM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use model::derain::{to_planar, to_tensor};
use model::BrnBackend;
use serde::Serialize;

use super::{load_model, ModelArgs};
use crate::device::{run_on, Job};
use crate::{data, eval};

/// Arguments of `brn eval`.
#[derive(Args)]
pub struct EvalArgs {
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

/// One image's scores in the JSON report.
#[derive(Serialize)]
pub struct Score {
    name: String,
    psnr: f64,
    ssim: f64,
    /// The rainy input's own score against the clean image (what deraining starts from).
    input_psnr: f64,
    input_ssim: f64,
}

/// Mean scores over the images.
#[derive(Serialize)]
pub struct Mean {
    psnr: f64,
    ssim: f64,
}

/// What `brn eval --json` prints.
#[derive(Serialize)]
pub struct EvalReport {
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
fn score_pair<B: BrnBackend>(
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
    let planar = model::image::planar_from_rgb8(rainy.as_raw());
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

/// The stage counts to score: `--also-stages` (each from 1 to T − 1), sorted, then T.
fn stage_counts(also: &[usize], stages: usize) -> Result<Vec<usize>> {
    let mut counts: Vec<usize> = also.iter().copied().filter(|&t| t < stages).collect();
    if counts.len() != also.len() || counts.contains(&0) {
        bail!("--also-stages takes stage counts from 1 to T - 1 (T = {stages})");
    }
    counts.sort_unstable();
    counts.dedup();
    counts.push(stages);
    Ok(counts)
}

fn evaluate<B: BrnBackend>(args: EvalArgs, device: &B::Device) -> Result<ExitCode> {
    let (net, stages) = load_model::<B>(&args.model, device)?;
    let counts = stage_counts(&args.also_stages, stages)?;
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
    let also = counts
        .iter()
        .zip(&per_count)
        .map(|(t, scores)| (t.to_string(), mean_of(scores)))
        .collect();
    let images = pairs
        .iter()
        .zip(&finals)
        .zip(&inputs)
        .map(|((pair, &(psnr, ssim)), &(input_psnr, input_ssim))| Score {
            name: pair.name.clone(),
            psnr,
            ssim,
            input_psnr,
            input_ssim,
        })
        .collect();
    let report = EvalReport {
        images,
        mean: mean_of(&finals),
        input: mean_of(&inputs),
        also,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_means(&report, stages);
    }
    Ok(ExitCode::SUCCESS)
}

/// The report's means as lines of text: the rainy inputs', each earlier stage count's, T's.
fn print_means(report: &EvalReport, stages: usize) {
    let count = report.images.len();
    let line = |m: &Mean, what: String| {
        println!(
            "mean over {count}: psnr {:.4} ssim {:.5} ({what})",
            m.psnr, m.ssim
        )
    };
    line(&report.input, "the rainy inputs".into());
    for (t, m) in &report.also {
        line(m, format!("T = {t}"));
    }
    line(&report.mean, format!("T = {stages}"));
}

/// Score the weights on the device the arguments name.
pub fn run(args: EvalArgs) -> Result<ExitCode> {
    let device = args.model.device.clone();
    run_on(&device, args)
}

impl Job for EvalArgs {
    fn run<B: BrnBackend>(self, devices: &[B::Device]) -> Result<ExitCode> {
        evaluate::<B>(self, &devices[0])
    }
}
