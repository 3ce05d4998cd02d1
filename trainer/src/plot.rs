//! `progress.png` beside the checkpoints: training loss and validation PSNR / SSIM per epoch,
//! one panel each, with the range of each axis written in a built-in 3x5 pixel font (no font
//! files, no plotting dependency).

use std::path::Path;

use anyhow::{Context, Result};
use image::{Rgb, RgbImage};

const WIDTH: u32 = 640;
const PANEL: u32 = 170;
const MARGIN: u32 = 44;
const SCALE: u32 = 2;

/// One row of `log.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochRow {
    /// The epoch (from 1).
    pub epoch: usize,
    /// Its mean training loss.
    pub train_loss: f64,
    /// Validation PSNR (dB) and SSIM after it, where the run validates.
    pub val_psnr: Option<f64>,
    /// See `val_psnr`.
    pub val_ssim: Option<f64>,
    /// Seconds of training since the run began.
    pub seconds: Option<f64>,
}

/// Read the rows of a `log.csv` (header `epoch,step,lr,train_loss,val_psnr,val_ssim,...`).
pub fn read_log(path: &Path) -> Result<Vec<EpochRow>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 6 {
            continue;
        }
        let num = |s: &str| s.trim().parse::<f64>().ok().filter(|v| v.is_finite());
        let (Some(epoch), Some(loss)) = (f[0].trim().parse().ok(), num(f[3])) else {
            continue;
        };
        rows.push(EpochRow {
            epoch,
            train_loss: loss,
            val_psnr: num(f[4]),
            val_ssim: num(f[5]),
            seconds: f.get(6).and_then(|s| num(s)),
        });
    }
    Ok(rows)
}

/// Glyphs of the 3x5 font: digits, '.', '-', and the few letters of the panel titles and the
/// rain presets' names.
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 2, 2],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [7, 4, 4, 4, 7],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 6, 4, 7],
        'G' => [7, 4, 5, 5, 7],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'O' => [7, 5, 5, 5, 7],
        'P' => [7, 5, 7, 4, 4],
        'R' => [6, 5, 6, 5, 5],
        'S' => [7, 4, 7, 1, 7],
        'T' => [7, 2, 2, 2, 2],
        'V' => [5, 5, 5, 5, 2],
        'Y' => [5, 5, 2, 2, 2],
        _ => [0; 5],
    }
}

fn text(img: &mut RgbImage, x: u32, y: u32, s: &str, color: Rgb<u8>) {
    for (i, c) in s.chars().enumerate() {
        let rows = glyph(c.to_ascii_uppercase());
        for (dy, bits) in rows.iter().enumerate() {
            for dx in 0..3u32 {
                if bits & (4 >> dx) != 0 {
                    for sy in 0..SCALE {
                        for sx in 0..SCALE {
                            let px = x + (i as u32 * 4 + dx) * SCALE + sx;
                            let py = y + dy as u32 * SCALE + sy;
                            if px < img.width() && py < img.height() {
                                img.put_pixel(px, py, color);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `s` in white on a black box whose top-left corner is at (x, y): a label over a picture.
pub fn label_box(img: &mut RgbImage, x: u32, y: u32, s: &str) {
    let (w, h) = ((s.len() as u32 * 4 + 1) * SCALE, 7 * SCALE);
    for py in y..(y + h).min(img.height()) {
        for px in x..(x + w).min(img.width()) {
            img.put_pixel(px, py, Rgb([0, 0, 0]));
        }
    }
    text(img, x + SCALE, y + SCALE, s, Rgb([255, 255, 255]));
}

fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), color: Rgb<u8>) {
    let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
    for i in 0..=steps {
        let t = i as f64 / steps as f64;
        let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
        for (dx, dy) in [(0, 0), (1, 0), (0, 1)] {
            let (px, py) = (x as i64 + dx, y as i64 + dy);
            if px >= 0 && py >= 0 && (px as u32) < img.width() && (py as u32) < img.height() {
                img.put_pixel(px as u32, py as u32, color);
            }
        }
    }
}

fn label(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

fn panel(
    img: &mut RgbImage,
    top: u32,
    title: &str,
    points: &[(usize, f64)],
    epochs: usize,
    color: Rgb<u8>,
) {
    let axis = Rgb([90, 90, 90]);
    let (left, right) = (MARGIN + 30, WIDTH - 16);
    let (y0, y1) = (top + 22, top + PANEL - 18);
    text(img, left, top + 6, title, Rgb([20, 20, 20]));
    line(
        img,
        (left as f64, y0 as f64),
        (left as f64, y1 as f64),
        axis,
    );
    line(
        img,
        (left as f64, y1 as f64),
        (right as f64, y1 as f64),
        axis,
    );
    text(img, right - 24, y1 + 4, &epochs.to_string(), axis);
    text(img, left, y1 + 4, "1", axis);
    if points.is_empty() {
        text(img, left + 20, (y0 + y1) / 2, "NO DATA", axis);
        return;
    }
    let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    text(img, 4, y0, &label(hi), axis);
    text(img, 4, y1 - 10, &label(lo), axis);
    let x_of = |e: usize| {
        left as f64
            + (right - left) as f64 * (e.saturating_sub(1)) as f64 / (epochs.max(2) - 1) as f64
    };
    let y_of = |v: f64| y1 as f64 - (y1 - y0) as f64 * (v - lo) / span;
    for pair in points.windows(2) {
        line(
            img,
            (x_of(pair[0].0), y_of(pair[0].1)),
            (x_of(pair[1].0), y_of(pair[1].1)),
            color,
        );
    }
    for &(e, v) in points {
        let (x, y) = (x_of(e), y_of(v));
        line(img, (x - 2.0, y), (x + 2.0, y), color);
        line(img, (x, y - 2.0), (x, y + 2.0), color);
    }
}

/// Draw the three panels for `rows` over `epochs` planned epochs and write the PNG atomically.
pub fn write_plot(rows: &[EpochRow], epochs: usize, path: &Path) -> Result<()> {
    let mut img = RgbImage::from_pixel(WIDTH, PANEL * 3, Rgb([255, 255, 255]));
    let loss: Vec<_> = rows.iter().map(|r| (r.epoch, r.train_loss)).collect();
    let psnr: Vec<_> = rows
        .iter()
        .filter_map(|r| r.val_psnr.map(|v| (r.epoch, v)))
        .collect();
    let ssim: Vec<_> = rows
        .iter()
        .filter_map(|r| r.val_ssim.map(|v| (r.epoch, v)))
        .collect();
    let epochs = epochs.max(rows.iter().map(|r| r.epoch).max().unwrap_or(1));
    panel(&mut img, 0, "TRAIN LOSS", &loss, epochs, Rgb([200, 60, 40]));
    panel(
        &mut img,
        PANEL,
        "VAL PSNR DB",
        &psnr,
        epochs,
        Rgb([40, 90, 200]),
    );
    panel(
        &mut img,
        2 * PANEL,
        "VAL SSIM",
        &ssim,
        epochs,
        Rgb([30, 150, 80]),
    );
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("cannot encode the plot")?;
    model::io::write_atomic(path, &png).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_draws_every_series_from_the_log() {
        let dir = std::env::temp_dir().join(format!("brn-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log.csv");
        std::fs::write(
            &log,
            "epoch,step,lr,train_loss,val_psnr,val_ssim,seconds\n1,50,0.001,-0.56,20.5,0.74,10\n2,100,0.001,-0.71,22.0,0.76,20\n3,150,0.001,-0.75,,,30\n",
        )
        .unwrap();
        let rows = read_log(&log).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].val_psnr, None);
        assert_eq!(rows[2].seconds, Some(30.0));
        let png = dir.join("progress.png");
        write_plot(&rows, 10, &png).unwrap();
        let img = image::open(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, 3 * PANEL));
        // Each panel holds pixels of its series' colour.
        for (panel, colour) in [(0, [200, 60, 40]), (1, [40, 90, 200]), (2, [30, 150, 80])] {
            let found = img
                .enumerate_pixels()
                .any(|(_, y, p)| y / PANEL == panel && p.0 == colour);
            assert!(found, "panel {panel} has no line");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
