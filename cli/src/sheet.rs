//! Contact sheets: pictures side by side in labelled rows, each scaled to the sheet's row
//! height, for looking at many results at once (`brn synth --sheet`: the rain presets over
//! the same crops; `brn derain --sheet`: each rainy photo beside its derained output).

use std::path::Path;

use anyhow::{Context, Result};
use image::{imageops, Rgb, RgbImage};

/// A planar RGB picture `[3, H, W]` in [0, 1].
pub struct Cell {
    rgb: Vec<f32>,
    width: usize,
    height: usize,
}

impl Cell {
    /// A cell of planar RGB `[3, height, width]` in [0, 1].
    pub fn new(rgb: Vec<f32>, width: usize, height: usize) -> Self {
        debug_assert_eq!(rgb.len(), 3 * width * height);
        Self { rgb, width, height }
    }

    /// The cell as 8-bit RGB, scaled (keeping its aspect) to `height` rows.
    fn scaled(&self, height: usize) -> RgbImage {
        let n = self.width * self.height;
        let image = RgbImage::from_fn(self.width as u32, self.height as u32, |x, y| {
            let i = y as usize * self.width + x as usize;
            Rgb([0, 1, 2].map(|c| model::image::to_u8(self.rgb[c * n + i])))
        });
        if height == self.height {
            return image;
        }
        let width = ((self.width * height) as f64 / self.height as f64)
            .round()
            .max(1.0);
        imageops::resize(
            &image,
            width as u32,
            height as u32,
            imageops::FilterType::Triangle,
        )
    }
}

/// Rows of pictures, each row scaled to one height, with optional labels over each column's
/// first picture and over each row's first picture.
pub struct Sheet {
    height: usize,
    columns: Vec<String>,
    rows: Vec<(String, Vec<RgbImage>)>,
}

/// Pixels between pictures and around the sheet.
const GAP: usize = 4;

impl Sheet {
    /// An empty sheet whose pictures are scaled to `height` rows, with these column labels
    /// (none: an empty list).
    pub fn new(height: usize, columns: &[&str]) -> Self {
        Self {
            height: height.max(1),
            columns: columns.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Add a row of pictures, labelled over its first one (an empty label: none). Only the
    /// scaled pictures are kept.
    pub fn push_row(&mut self, label: &str, cells: &[Cell]) {
        let scaled = cells.iter().map(|c| c.scaled(self.height)).collect();
        self.rows.push((label.to_string(), scaled));
    }

    /// How many rows the sheet holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the sheet holds no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The sheet as one picture on white: each row's pictures side by side from the left (a
    /// narrow photo leaves no gap for a wide one in another row).
    pub fn render(&self) -> RgbImage {
        let row_width = |pictures: &[RgbImage]| {
            pictures
                .iter()
                .map(|p| p.width() as usize + GAP)
                .sum::<usize>()
                + GAP
        };
        let width = self
            .rows
            .iter()
            .map(|(_, r)| row_width(r))
            .max()
            .unwrap_or(GAP);
        let height = self.rows.len() * (self.height + GAP) + GAP;
        let mut sheet = RgbImage::from_pixel(width as u32, height as u32, Rgb([255; 3]));
        for (row, (label, pictures)) in self.rows.iter().enumerate() {
            let y = GAP + row * (self.height + GAP);
            let mut x = GAP;
            for (column, picture) in pictures.iter().enumerate() {
                imageops::overlay(&mut sheet, picture, x as i64, y as i64);
                if row == 0 {
                    if let Some(name) = self.columns.get(column).filter(|n| !n.is_empty()) {
                        crate::label::label_box(&mut sheet, x as u32 + 2, y as u32 + 2, name);
                    }
                }
                x += picture.width() as usize + GAP;
            }
            if !label.is_empty() {
                // Under a column label on the first row, over the picture's corner elsewhere.
                let below = if row == 0 && !self.columns.is_empty() {
                    24
                } else {
                    2
                };
                crate::label::label_box(&mut sheet, GAP as u32 + 2, (y + below) as u32, label);
            }
        }
        sheet
    }

    /// Write the sheet as a PNG, whole or not at all.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut png = Vec::new();
        self.render()
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .context("cannot encode the contact sheet")?;
        model::io::write_atomic(path, &png)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(width: usize, height: usize, v: f32) -> Cell {
        Cell::new(vec![v; 3 * width * height], width, height)
    }

    #[test]
    fn pictures_are_scaled_to_the_row_height_and_laid_side_by_side() {
        // Row 1: a 40x20 picture (scaled to 20x10) and a 10x10 one; row 2: one 30x10 picture.
        // The sheet is as wide as its widest row (row 1: 20 + 10 and a gap), each row packed
        // from the left.
        let mut sheet = Sheet::new(10, &[]);
        sheet.push_row("", &[plain(40, 20, 0.0), plain(10, 10, 0.0)]);
        sheet.push_row("", &[plain(30, 10, 0.0)]);
        let image = sheet.render();
        assert_eq!(
            image.dimensions(),
            (
                (GAP + 20 + GAP + 10 + GAP) as u32,
                (GAP + 10 + GAP + 10 + GAP) as u32
            )
        );
        let black = Rgb([0, 0, 0]);
        let white = Rgb([255, 255, 255]);
        let at = |x: usize, y: usize| *image.get_pixel(x as u32, y as u32);
        assert_eq!(at(GAP + 19, GAP + 5), black, "the scaled 20x10 picture");
        assert_eq!(at(GAP + 21, GAP + 5), white, "the gap after it");
        assert_eq!(
            at(GAP + 20 + GAP + 5, GAP + 5),
            black,
            "the 10x10 right after the gap"
        );
        assert_eq!(at(GAP + 29, 2 * GAP + 15), black, "row 2's 30x10 picture");
        assert_eq!(at(1, 1), white, "the margin");
    }
}
