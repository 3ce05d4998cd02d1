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

#[derive(Serialize)]
pub struct Score {
    name: String,
    psnr: f64,
    ssim: f64,
    /// The rainy input's own score against the clean image (what deraining starts from).
    input_psnr: f64,
    input_ssim: f64,
}

#[derive(Serialize)]
pub struct Mean {
    psnr: f64,
    ssim: f64,
}

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

fn evaluate<B: BrnBackend>(args: EvalArgs, device: &B::Device) -> Result<ExitCode> {
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
