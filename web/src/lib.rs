//! BRN in the browser: the thin shell the page's Web Worker calls (see `wasm.rs`, built only
//! for wasm). Decoding, tiling, weight loading and the network all live in the `model` crate;
//! this crate picks tile sizes from the GPU's limits and turns the model's planar maps into the
//! RGBA views the page shows.

#![warn(missing_docs)]

use model::image::{rgba8, Picture};
use model::Derained;

#[cfg(target_arch = "wasm32")]
mod wasm;

/// The largest image the page accepts. wasm32 has at most 4 GiB of memory and every full-size
/// float map costs 12 bytes a pixel; 40 MP keeps a derain with its rain layer well inside it.
pub const MAX_PIXELS: u64 = 40_000_000;

/// Stage-by-stage views are kept for images up to this many pixels (each stage costs two maps).
pub const MAX_STAGE_VIEW_PIXELS: u64 = 4_000_000;

/// Tile side for the CPU backend in wasm: small enough for frequent progress and cancel points.
pub const CPU_TILE: usize = 256;

/// One image the page can show.
pub struct View {
    /// What it is, as the view switcher labels it.
    pub label: String,
    /// Its pixels, interleaved 8-bit RGBA.
    pub rgba: Vec<u8>,
}

/// The views of a derain, in the switcher's order: input, derained, rain layer, then each
/// stage's background and rain estimates.
pub fn views(picture: &Picture, out: &Derained) -> Vec<View> {
    let view = |label: String, rgb: &[f32]| View {
        label,
        rgba: rgba8(rgb, picture),
    };
    let mut views = vec![
        view("Input".into(), &picture.rgb),
        view("Derained".into(), &out.background),
    ];
    if let Some(rain) = &out.rain {
        views.push(view("Rain layer".into(), rain));
    }
    for (t, x) in out.background_stages.iter().enumerate() {
        views.push(view(format!("Stage {} background", t + 1), x));
    }
    for (t, r) in out.rain_stages.iter().enumerate() {
        views.push(view(format!("Stage {} rain", t + 1), r));
    }
    views
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_follow_the_outputs() {
        let picture = model::image::Picture {
            width: 2,
            height: 1,
            rgb: vec![0.0, 1.0, 0.5, 0.5, 1.0, 0.0],
            alpha: None,
            depth: model::image::BitDepth::Eight,
            gray: false,
        };
        let out = Derained {
            background: picture.rgb.clone(),
            rain: Some(vec![0.0; 6]),
            background_stages: vec![picture.rgb.clone(); 2],
            rain_stages: vec![vec![0.0; 6]; 2],
        };
        let labels: Vec<_> = views(&picture, &out).into_iter().map(|v| v.label).collect();
        assert_eq!(
            labels,
            [
                "Input",
                "Derained",
                "Rain layer",
                "Stage 1 background",
                "Stage 2 background",
                "Stage 1 rain",
                "Stage 2 rain"
            ]
        );
        let rgba = rgba8(&picture.rgb, &picture);
        assert_eq!(rgba, [0, 127, 255, 255, 255, 127, 0, 255]);
    }
}
