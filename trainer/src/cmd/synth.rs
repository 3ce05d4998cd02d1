//! `brn synth`: rainy/clean pairs from clean photos, with the training pipeline's rain.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::ProgressBar;
use model::image::encode_png;

use super::read_picture;
use crate::{data, synth};

/// Arguments of `brn synth`.
#[derive(Args)]
pub struct SynthArgs {
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

/// Write rainy/clean pairs made from the clean photos.
pub fn run(args: SynthArgs) -> Result<ExitCode> {
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
