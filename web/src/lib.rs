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

/// The wasm memory one CPU worker grows to deraining [`CPU_TILE`] tiles, in MiB (measured by
/// the browser test of two workers: see README): the page starts no more workers than a
/// quarter of the device's memory holds.
pub const CPU_WORKER_MIB: u32 = 160;

/// One image the page can show.
pub struct View {
    /// Which it is, for the page's code: `input`, or an [`model::Output`]'s key.
    pub key: String,
    /// What it is, as the view switcher labels it.
    pub label: String,
    /// Its pixels, interleaved 8-bit RGBA.
    pub rgba: Vec<u8>,
}

/// The views of a derain, in the switcher's order: the input, then every output of
/// [`Derained::outputs`] (derained, rain layer, each stage's background and rain estimates).
pub fn views(picture: &Picture, out: &Derained) -> Vec<View> {
    let input = View {
        key: "input".into(),
        label: "Input".into(),
        rgba: rgba8(&picture.rgb, picture),
    };
    let outputs = out.outputs().map(|(output, rgb)| View {
        key: output.key(),
        label: output.label(),
        rgba: rgba8(rgb, picture),
    });
    std::iter::once(input).chain(outputs).collect()
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
        let views = views(&picture, &out);
        let keys: Vec<_> = views.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "input",
                "derained",
                "rain",
                "stage1-background",
                "stage2-background",
                "stage1-rain",
                "stage2-rain"
            ]
        );
        let labels: Vec<_> = views.into_iter().map(|v| v.label).collect();
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
