//! `brn derain`: derain image files and folders into PNGs of the inputs' pixel size.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use model::image::encode_png;
use model::{BrnBackend, DerainOptions, Derained, Picture};

use super::{load_model, read_picture, ModelArgs};
use crate::device::{run_on, Job};
use crate::sheet::{Cell, Sheet};

/// Arguments of `brn derain`.
#[derive(Args)]
pub struct DerainArgs {
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
    /// Largest tile side in pixels: bounds peak memory; larger images are processed in
    /// overlapping tiles [default: 512 on the CPU; on a GPU, what its limits allow].
    #[arg(long)]
    tile: Option<usize>,
    /// Also write a contact sheet PNG: each input beside its derained image, a row each
    /// (before/after at a glance, e.g. over a folder of real rainy photos).
    #[arg(long)]
    sheet: Option<PathBuf>,
    /// Height in pixels of the sheet's rows (each picture scaled to it).
    #[arg(long, default_value_t = 240, requires = "sheet")]
    sheet_height: usize,
    /// On a wgpu GPU, the tile side its limits allow.
    #[arg(skip)]
    gpu_tile: Option<usize>,
}

fn derain<B: BrnBackend>(args: DerainArgs, device: &B::Device) -> Result<ExitCode> {
    if args.tile.is_some_and(|tile| tile < 16) {
        bail!("--tile must be at least 16 pixels");
    }
    if !(16..=2048).contains(&args.sheet_height) {
        bail!("--sheet-height must be between 16 and 2048 pixels");
    }
    let (net, stages) = load_model::<B>(&args.model, device)?;
    let inputs = input_files(&args.inputs)?;
    writable_folder(&args.output)?;

    let mut options = DerainOptions {
        rain_layer: args.rain_layer,
        all_stages: args.all_stages,
        tile: args.tile.unwrap_or(512),
        ..DerainOptions::new(stages)
    };
    if let Some(limit) = args.gpu_tile {
        // As the page tiles: never above what the GPU's limits allow.
        options.tile = args.tile.unwrap_or(limit).min(limit);
        options.overlap = model::tiling::overlap_for(options.tile);
    }
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] tile {pos}/{len} {elapsed} (eta {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut failed = Vec::new();
    let mut written = 0usize;
    let mut sheet = Sheet::new(args.sheet_height, &["rainy", "derained"]);
    for input in &inputs {
        let name = input
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        bar.set_message(name.clone());
        let result = (|| -> Result<()> {
            let picture = read_picture(input)?;
            bar.set_position(0);
            bar.reset_eta();
            let out = model::derain(&net, &picture, &options, device, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                true
            })?;
            write_outputs(&out, &picture, &args.output, &name)?;
            if args.sheet.is_some() {
                let (w, h) = (picture.width, picture.height);
                let cells = [
                    Cell::new(picture.rgb, w, h),
                    Cell::new(out.background, w, h),
                ];
                sheet.push_row("", &cells);
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
    if let Some(path) = &args.sheet {
        if sheet.is_empty() {
            eprintln!("no contact sheet: no image was derained");
        } else {
            sheet.write(path)?;
            eprintln!(
                "wrote the contact sheet {} ({} rows)",
                path.display(),
                sheet.len()
            );
        }
    }
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

/// The image files named: files as they are, folders' images in name order.
fn input_files(named: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut inputs = Vec::new();
    for input in named {
        if input.is_dir() {
            inputs.extend(model::io::image_files(input)?);
        } else {
            inputs.push(input.clone());
        }
    }
    Ok(inputs)
}

/// Create the output folder and check that it takes files, before any work is done.
fn writable_folder(folder: &Path) -> Result<()> {
    std::fs::create_dir_all(folder)
        .with_context(|| format!("cannot create output folder {}", folder.display()))?;
    let probe = folder.join(format!(".brn-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("output folder {} is not writable", folder.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Every map of a derain as a PNG named after the input and the map (`NAME.png`,
/// `NAME_rain.png`, `NAME_stage3_x.png`, ...), each written whole or not at all.
fn write_outputs(out: &Derained, picture: &Picture, folder: &Path, name: &str) -> Result<()> {
    for (output, pixels) in out.outputs() {
        let png = encode_png(pixels, picture)?;
        let file = format!("{name}{}.png", output.file_suffix());
        model::io::write_atomic(&folder.join(file), &png)?;
    }
    Ok(())
}

/// Derain the inputs on the device the arguments name.
pub fn run(args: DerainArgs) -> Result<ExitCode> {
    let device = args.model.device.clone();
    run_on(&device, args)
}

impl Job for DerainArgs {
    fn use_gpu_tile(&mut self, tile: usize) {
        self.gpu_tile = Some(tile);
    }

    fn run<B: BrnBackend>(self, devices: &[B::Device]) -> Result<ExitCode> {
        derain::<B>(self, &devices[0])
    }
}
