//! `brn synth`: rainy/clean pairs from clean photos, with the training pipeline's rain.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::ProgressBar;
use model::image::encode_png;

use super::read_picture;
use crate::rain::{Preset, RainMix};
use crate::sheet::{Cell, Sheet};
use crate::{rendered, synth};

/// Arguments of `brn synth`.
#[derive(Args)]
pub struct SynthArgs {
    /// Folder of clean photos.
    #[arg(long)]
    clean: PathBuf,
    /// Output folder: rainy/ and clean/ with equal file names (the layout `eval --data` reads).
    #[arg(short, long, required_unless_present = "sheet")]
    output: Option<PathBuf>,
    /// Instead of pairs, write a contact sheet PNG: a row of clean centre crops of the first
    /// --count photos [default 4], then a row per preset of --rows.
    #[arg(long, conflicts_with = "output")]
    sheet: Option<PathBuf>,
    /// The sheet's rows: rain presets, comma-separated [default: every preset that rains].
    #[arg(long, value_delimiter = ',', value_parser = Preset::NAMES, requires = "sheet")]
    rows: Vec<String>,
    /// Side of the sheet's crops in pixels.
    #[arg(long, default_value_t = 192)]
    crop: usize,
    /// Rain preset (`none`: the clean photos as their own rainy input, e.g. to score how far
    /// weights move a rain-free photo).
    #[arg(long, default_value = "light", value_parser = Preset::NAMES)]
    preset: String,
    /// Folder of rain streak layers for the rendered presets (Garg and Nayar's database).
    #[arg(long, default_value = rendered::DEFAULT_FOLDER)]
    streaks: PathBuf,
    /// Number of pairs [default: one per clean photo].
    #[arg(long)]
    count: Option<usize>,
    /// Random seed: the same seed makes the same pairs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How strong the presets' veil and fog are, as training's `"veil"`: a scale of their
    /// ranges from 0 (none: the streaks alone, e.g. to score streak removal without a veil's)
    /// to 1 (as the preset defines them).
    #[arg(long, default_value_t = 1.0, value_parser = veil_strength)]
    veil: f32,
}

impl SynthArgs {
    /// The presets `names` as `--streaks` and `--veil` make them rain.
    fn rain<S: AsRef<str>>(&self, names: &[S]) -> Result<RainMix> {
        Ok(RainMix::new(names, &self.streaks)?.with_veil(self.veil, 1.0, true))
    }
}

/// `--veil`: a number from 0 to 1.
fn veil_strength(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(strength) if (0.0..=1.0).contains(&strength) => Ok(strength),
        _ => Err(format!(
            "'{text}' is not a strength from 0 (no veil) to 1 (as defined)"
        )),
    }
}

/// Write rainy/clean pairs made from the clean photos.
pub fn run(args: SynthArgs) -> Result<ExitCode> {
    let photos = model::io::image_files(&args.clean)?;
    if photos.is_empty() {
        bail!("{} holds no images", args.clean.display());
    }
    let output = match (&args.output, &args.sheet) {
        (_, Some(sheet)) => return write_sheet(&args, &photos, sheet),
        (Some(output), None) => output.clone(),
        (None, None) => bail!("give -o DIR for pairs, or --sheet FILE for a contact sheet"),
    };
    let rain = args.rain(&[&args.preset])?;
    let (rainy_dir, clean_dir) = (output.join("rainy"), output.join("clean"));
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
            let (rainy, _) = rain.add(0, &picture.rgb, picture.width, picture.height, &mut rng);
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
        "wrote {} pair(s) ({} preset{}, seed {}) into {}",
        count - failed,
        args.preset,
        if args.veil < 1.0 {
            format!(", veil and fog x{}", args.veil)
        } else {
            String::new()
        },
        args.seed,
        output.display()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A contact sheet of the presets: clean centre crops in the first row, then each preset's
/// rain over the same crops (seeded by `--seed` and the column), labelled.
fn write_sheet(args: &SynthArgs, photos: &[PathBuf], path: &std::path::Path) -> Result<ExitCode> {
    let side = args.crop;
    if side < 16 {
        bail!("--crop must be at least 16 pixels");
    }
    let names: Vec<String> = if args.rows.is_empty() {
        Preset::RAINS.iter().map(|s| s.to_string()).collect()
    } else {
        args.rows.clone()
    };
    let rain = args.rain(&names).with_context(|| {
        let drawn: Vec<&str> = Preset::RAINS
            .into_iter()
            .filter(|name| Preset::named(name).is_some_and(|p| !p.is_rendered()))
            .collect();
        format!(
            "the sheet's rows are {}; leave the rendered ones out with --rows {}",
            names.join(","),
            drawn.join(",")
        )
    })?;
    let columns = args.count.unwrap_or(4).clamp(1, photos.len());
    let mut crops = Vec::new();
    for photo in &photos[..columns] {
        let picture = read_picture(photo)?;
        let (w, h) = (picture.width.min(side), picture.height.min(side));
        let (x0, y0) = ((picture.width - w) / 2, (picture.height - h) / 2);
        let n = picture.width * picture.height;
        let mut crop = vec![0f32; 3 * side * side];
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    crop[c * side * side + y * side + x] =
                        picture.rgb[c * n + (y0 + y) * picture.width + x0 + x];
                }
            }
        }
        crops.push(crop);
    }
    let mut sheet = Sheet::new(side, &[]);
    let cells = |images: Vec<Vec<f32>>| -> Vec<Cell> {
        images
            .into_iter()
            .map(|rgb| Cell::new(rgb, side, side))
            .collect()
    };
    sheet.push_row("clean", &cells(crops.clone()));
    for (row, name) in names.iter().enumerate() {
        let rainy = crops.iter().enumerate().map(|(column, crop)| {
            let mut rng = synth::rng_for(args.seed, column as u64);
            rain.add(row, crop, side, side, &mut rng).0
        });
        sheet.push_row(name, &cells(rainy.collect()));
    }
    sheet.write(path)?;
    eprintln!(
        "wrote {} ({columns} photos x clean + {} presets, {side}x{side} crops, seed {})",
        path.display(),
        names.len(),
        args.seed
    );
    Ok(ExitCode::SUCCESS)
}
