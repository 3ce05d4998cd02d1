//! `progress.svg` beside the checkpoints: training loss and validation PSNR / SSIM per epoch,
//! one panel each, drawn by `plotters`. SVG, because its text is the viewer's to draw: a PNG's
//! labels would need a font on the machine that trains (plotters' `ttf`: fontconfig and
//! system fonts) or one shipped with the repository (`ab_glyph`).

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;

/// The plot's size in (CSS) pixels: three panels stacked.
const WIDTH: u32 = 720;
const PANEL: u32 = 220;

/// The three series: panel title and line colour.
const LOSS: (&str, RGBColor) = ("training loss", RGBColor(200, 60, 40));
const PSNR: (&str, RGBColor) = ("validation PSNR (dB)", RGBColor(40, 90, 200));
const SSIM: (&str, RGBColor) = ("validation SSIM", RGBColor(30, 150, 80));

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

/// The range a panel's vertical axis shows: the values' with a margin of 8 % each side (one
/// unit when they are all equal).
fn value_range(points: &[(usize, f64)]) -> std::ops::Range<f64> {
    let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = if hi > lo { (hi - lo) * 0.08 } else { 0.5 };
    lo - pad..hi + pad
}

/// One panel: `points` as (epoch, value) over epochs 1..=`epochs`.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    (title, colour): (&str, RGBColor),
    points: &[(usize, f64)],
    epochs: usize,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let fail = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("cannot draw the plot: {e}");
    let caption = if points.is_empty() {
        format!("{title}: no data yet")
    } else {
        title.to_string()
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(10)
        .margin_right(28)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(1f64..epochs.max(2) as f64, value_range(points))
        .map_err(fail)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_label_formatter(&|epoch| format!("{epoch:.0}"))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(fail)?;
    let line = points.iter().map(|&(epoch, value)| (epoch as f64, value));
    chart
        .draw_series(LineSeries::new(line, colour.stroke_width(2)))
        .map_err(fail)?;
    Ok(())
}

/// Draw the three panels for `rows` over `epochs` planned epochs and write the SVG atomically.
pub fn write_plot(rows: &[EpochRow], epochs: usize, path: &Path) -> Result<()> {
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
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 3 * PANEL)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| anyhow!("cannot draw the plot: {e}"))?;
        let areas = root.split_evenly((3, 1));
        for (area, (series, points)) in
            areas
                .iter()
                .zip([(LOSS, &loss), (PSNR, &psnr), (SSIM, &ssim)])
        {
            panel(area, series, points, epochs)?;
        }
        root.present()
            .map_err(|e| anyhow!("cannot draw the plot: {e}"))?;
    }
    model::io::write_atomic(path, svg.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The points of the polyline drawn in `colour` (plotters writes a series as one SVG
    /// polyline with its stroke colour in hex).
    fn series(svg: &str, colour: RGBColor) -> Vec<(f64, f64)> {
        let stroke = format!(
            "stroke=\"#{:02X}{:02X}{:02X}\"",
            colour.0, colour.1, colour.2
        );
        let lines: Vec<&str> = svg
            .split("<polyline")
            .skip(1)
            .filter(|tag| tag.split("/>").next().unwrap().contains(&stroke))
            .collect();
        assert_eq!(lines.len(), 1, "one line in {stroke}");
        let points = lines[0]
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        points
            .split_whitespace()
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    /// A log of three epochs (the last without validation) read back and drawn: each series is
    /// one line with a point per logged value, later epochs to the right and higher values
    /// higher up (SVG's y grows downwards), in the panel of its own; the axis says "epoch".
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
        let path = dir.join("progress.svg");
        write_plot(&rows, 10, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60.min(svg.len())]);
        let loss = series(&svg, LOSS.1);
        let psnr = series(&svg, PSNR.1);
        let ssim = series(&svg, SSIM.1);
        assert_eq!((loss.len(), psnr.len(), ssim.len()), (3, 2, 2));
        // The loss falls (-0.56, -0.71, -0.75): each point lower on the page, further right.
        assert!(
            loss.windows(2).all(|w| w[1].0 > w[0].0 && w[1].1 > w[0].1),
            "{loss:?}"
        );
        // PSNR and SSIM rise.
        assert!(
            psnr[1].1 < psnr[0].1 && ssim[1].1 < ssim[0].1,
            "{psnr:?} {ssim:?}"
        );
        // Each in its own third of the page.
        let third = |points: &[(f64, f64)]| (points[0].1 / PANEL as f64) as usize;
        assert_eq!((third(&loss), third(&psnr), third(&ssim)), (0, 1, 2));
        let texts: Vec<&str> = svg
            .split("<text")
            .skip(1)
            .map(|tag| {
                tag.split_once('>')
                    .unwrap()
                    .1
                    .split("</text>")
                    .next()
                    .unwrap()
                    .trim()
            })
            .collect();
        for title in ["epoch", LOSS.0, PSNR.0, SSIM.0] {
            assert!(texts.contains(&title), "{title} in {texts:?}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
