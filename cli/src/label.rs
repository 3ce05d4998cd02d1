//! Labels over pictures (the contact sheets of `brn synth` and `brn derain --sheet`): a built-in
//! 3x5 pixel font, so that a sheet needs no font file on the machine that makes it.

use image::{Rgb, RgbImage};

/// Each font pixel is drawn as SCALE x SCALE pixels.
const SCALE: u32 = 2;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A label is a black box with white strokes of the glyphs' shapes: the box of "1" is
    /// 5 x 7 font pixels, and its glyph (a 3x5 pattern written out above) is drawn at scale.
    #[test]
    fn a_label_draws_its_glyphs_in_a_box() {
        let mut img = RgbImage::from_pixel(40, 20, Rgb([128, 128, 128]));
        label_box(&mut img, 3, 2, "1");
        let at = |x: u32, y: u32| img.get_pixel(3 + x * SCALE, 2 + y * SCALE).0;
        // The glyph "1" is rows 010, 110, 010, 010, 111, one font pixel in from the box's edge.
        let one = ["010", "110", "010", "010", "111"];
        for (row, bits) in one.iter().enumerate() {
            for (column, bit) in bits.chars().enumerate() {
                let want = if bit == '1' { [255; 3] } else { [0; 3] };
                assert_eq!(
                    at(1 + column as u32, 1 + row as u32),
                    want,
                    "{row},{column}"
                );
            }
        }
        // The box ends where it should; outside it the picture is untouched.
        assert_eq!(at(4, 6), [0; 3]);
        assert_eq!(img.get_pixel(3 + 5 * SCALE, 2).0, [128; 3]);
    }
}
