//! BRN in the browser: the thin shell the page's Web Worker calls. Everything it does —
//! decoding, tiling, the network — lives in the `model` crate; this crate only converts
//! between the page's RGBA canvases and the model's planar pictures.

use burn::tensor::backend::Backend;
use model::image::{to_u8, BitDepth, Picture};
use model::{Brn, DerainOptions, ModelError};

/// An RGBA canvas (row-major, 8 bits per channel) as a picture; alpha is kept.
pub fn picture_from_rgba(rgba: &[u8], width: usize, height: usize) -> Result<Picture, ModelError> {
    if rgba.len() != width * height * 4 {
        return Err(ModelError::Decode(format!(
            "canvas has {} bytes, expected {width}x{height}x4",
            rgba.len()
        )));
    }
    model::image::check_size(width as u64, height as u64)?;
    let n = width * height;
    let mut rgb = vec![0f32; 3 * n];
    let mut alpha = vec![0f32; n];
    for (i, p) in rgba.chunks_exact(4).enumerate() {
        for c in 0..3 {
            rgb[c * n + i] = p[c] as f32 / 255.0;
        }
        alpha[i] = p[3] as f32 / 255.0;
    }
    Ok(Picture {
        width,
        height,
        rgb,
        alpha: Some(alpha),
        depth: BitDepth::Eight,
        gray: false,
    })
}

/// Planar RGB `[3, H, W]` back to an RGBA canvas with the picture's alpha.
pub fn rgba_from_planar(rgb: &[f32], like: &Picture) -> Vec<u8> {
    let n = like.width * like.height;
    (0..n)
        .flat_map(|i| {
            let a = like.alpha.as_ref().map(|a| to_u8(a[i])).unwrap_or(255);
            [to_u8(rgb[i]), to_u8(rgb[n + i]), to_u8(rgb[2 * n + i]), a]
        })
        .collect()
}

/// Derain an RGBA canvas; `progress(done, total)` returns false to cancel.
pub fn derain_rgba<B: Backend>(
    model: &Brn<B>,
    rgba: &[u8],
    width: usize,
    height: usize,
    options: &DerainOptions,
    device: &B::Device,
    progress: impl FnMut(usize, usize) -> bool,
) -> Result<Vec<u8>, ModelError> {
    let picture = picture_from_rgba(rgba, width, height)?;
    let out = model::derain(model, &picture, options, device, progress)?;
    Ok(rgba_from_planar(&out.background, &picture))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgba_round_trips_and_bad_sizes_are_refused() {
        let rgba: Vec<u8> = (0..4 * 6 * 5).map(|i| (i * 37 % 256) as u8).collect();
        let picture = picture_from_rgba(&rgba, 6, 5).unwrap();
        assert_eq!(rgba_from_planar(&picture.rgb, &picture), rgba);
        assert!(picture_from_rgba(&rgba, 7, 5).is_err());
    }
}
