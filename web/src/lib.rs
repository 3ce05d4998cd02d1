//! BRN in the browser: the thin shell the page's Web Worker calls (see `wasm.rs`, built only
//! for wasm). Decoding, tiling, weight loading and the network all live in the `model` crate;
//! this crate picks tile sizes from the GPU's limits and turns the model's planar maps into the
//! RGBA views the page shows.

#![warn(missing_docs)]

use model::image::{rgba8, Picture};
use model::{Derained, ModelError};

#[cfg(target_arch = "wasm32")]
mod wasm;

/// The largest image the page accepts. wasm32 has at most 4 GiB of memory and every full-size
/// float map costs 12 bytes a pixel; 40 MP keeps a derain with its rain layer well inside it.
pub const MAX_PIXELS: u64 = 40_000_000;

/// Stage-by-stage views are kept for images up to this many pixels (each stage costs two maps).
pub const MAX_STAGE_VIEW_PIXELS: u64 = 4_000_000;

/// The smallest tile side the CPU backend in wasm plans with (and its warm-up's): every
/// worker's tiles are at least this large where the image is.
pub const CPU_TILE: usize = 256;

/// The largest tile side the CPU backend plans with: a 512x512 photo on one worker is one
/// tile, as the command line derains it.
pub const MAX_CPU_TILE: usize = 512;

/// The wasm memory a CPU worker grows to per pixel of its tiles, in bytes (measured by
/// `scripts/profile-page-cpu.sh`: 101 MiB for tiles of 214x214, 554 MiB for 512x512).
pub const CPU_TILE_BYTES_PER_PIXEL: f64 = 2200.0;

/// The CPU tile side for a `width` x `height` photo on `workers` Web Workers
/// ([`model::tiling::balanced_tile`]: done soonest, every worker busy to the last round),
/// from [`CPU_TILE`] up to what a quarter of the device's memory (`device_memory_gib`,
/// `navigator.deviceMemory`; 8 GiB where the browser does not tell) holds on every worker at
/// [`CPU_TILE_BYTES_PER_PIXEL`], and at most [`MAX_CPU_TILE`].
pub fn cpu_tile(width: usize, height: usize, workers: usize, device_memory_gib: f64) -> usize {
    let workers = workers.max(1);
    let quarter_mib = quarter_of_memory_mib(device_memory_gib).unwrap_or(8.0 * 1024.0 / 4.0);
    let per_worker = quarter_mib * f64::from(1u32 << 20) / workers as f64;
    let fits = ((per_worker / CPU_TILE_BYTES_PER_PIXEL).sqrt() as usize) / 8 * 8;
    let max = fits.clamp(CPU_TILE, MAX_CPU_TILE);
    model::tiling::balanced_tile(width, height, workers, [CPU_TILE, max])
}

/// The wasm memory one CPU worker grows to deraining [`CPU_TILE`] tiles, in MiB (measured by
/// the browser test of two workers: see README): the page starts no more workers than a
/// quarter of the device's memory holds.
pub const CPU_WORKER_MIB: u32 = 160;

/// The key of the input's view (the page's "before" side); the others are [`model::Output`] keys.
pub const INPUT_VIEW: &str = "input";

/// The most CPU workers the page starts, whatever the core count or `?workers=` says.
pub const MAX_CPU_WORKERS: usize = 16;

/// How many CPU workers the page starts: `wanted` (at most [`MAX_CPU_WORKERS`]), or, where the person did not choose the
/// number (`asked` false) and the browser tells the device's memory (`device_memory_gib`,
/// `navigator.deviceMemory`, rounded by the browser; 0 where it does not tell), no more than a
/// quarter of that memory holds at [`CPU_WORKER_MIB`] each. At least one.
pub fn cpu_workers(wanted: usize, asked: bool, device_memory_gib: f64) -> usize {
    let wanted = wanted.clamp(1, MAX_CPU_WORKERS);
    match quarter_of_memory_mib(device_memory_gib) {
        Some(quarter) if !asked => {
            let fit = (quarter / CPU_WORKER_MIB as f64).floor() as usize;
            wanted.min(fit).max(1)
        }
        _ => wanted,
    }
}

/// A quarter of the device's memory in MiB (the page's budget for its CPU workers), from
/// `navigator.deviceMemory` in GiB; `None` where the browser does not tell (0 or NaN).
fn quarter_of_memory_mib(device_memory_gib: f64) -> Option<f64> {
    (device_memory_gib.is_finite() && device_memory_gib > 0.0)
        .then(|| device_memory_gib * 1024.0 / 4.0)
}

/// The SHA-256 of `bytes` in lowercase hex: what the page checks the default weights' bytes
/// against (the build's manifest carries it), whether fetched or taken from the cache.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The download at an amount below 100 %: `derained` (the PNG a derain gave) `amount` (0 to 1)
/// of the way from `input` (the photo file's bytes), blended in linear light
/// ([`model::amount::blend`]), encoded as the derain's PNG is (the input's bit depth and alpha).
pub fn blend_png(input: &[u8], derained: &[u8], amount: f32) -> Result<Vec<u8>, ModelError> {
    let photo = model::image::decode_within(input, MAX_PIXELS)?;
    let result = model::image::decode_within(derained, MAX_PIXELS)?;
    if (photo.width, photo.height) != (result.width, result.height) {
        return Err(ModelError::InvalidConfig(format!(
            "the derained image is {}x{}, its photo {}x{}: not the photo it was derained from",
            result.width, result.height, photo.width, photo.height
        )));
    }
    let mixed = model::amount::blend(&photo.rgb, &result.rgb, amount)?;
    model::encode_png(&mixed, &photo)
}

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
        key: INPUT_VIEW.into(),
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

    /// The digest of FIPS 180-2's example message "abc", and the empty message's published one.
    #[test]
    fn sha256_matches_the_standards_examples() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    /// The amount's ends, through PNG files as the page has them: 0 gives the photo's pixels,
    /// 1 the derained PNG's, and a half lies between, in linear light; a result of another
    /// size is refused.
    #[test]
    fn the_amounts_ends_are_the_photo_and_the_result() {
        let photo = Picture {
            width: 3,
            height: 1,
            rgb: vec![0.0, 0.2, 1.0, 0.0, 0.4, 1.0, 0.0, 0.6, 1.0],
            alpha: None,
            depth: model::image::BitDepth::Eight,
            gray: false,
        };
        let derained_rgb = vec![1.0, 0.2, 0.0, 1.0, 0.4, 0.0, 1.0, 0.6, 0.0];
        let input = model::encode_png(&photo.rgb, &photo).unwrap();
        let derained = model::encode_png(&derained_rgb, &photo).unwrap();
        let pixels = |png: &[u8]| model::decode(png).unwrap().rgb;
        assert_eq!(
            pixels(&blend_png(&input, &derained, 0.0).unwrap()),
            photo.rgb
        );
        assert_eq!(
            pixels(&blend_png(&input, &derained, 1.0).unwrap()),
            derained_rgb
        );
        let half = pixels(&blend_png(&input, &derained, 0.5).unwrap());
        // Linear 0.5 is sRGB 0.735357, 187.5 levels, which the PNG truncates as every output of
        // ours (and the authors') is saved: 187, where a blend of the encoded values gives 127.
        assert_eq!(
            half[0],
            187.0 / 255.0,
            "black to white, half way in linear light"
        );
        // The same value either side stays, to the level the curve's round trip and the
        // truncation can lose (51 → 50.99.. → 50).
        assert!((half[1] - 0.2).abs() <= 1.0 / 255.0 + 1e-6, "{}", half[1]);
        let other = Picture {
            width: 1,
            height: 3,
            ..photo.clone()
        };
        let turned = model::encode_png(&photo.rgb, &other).unwrap();
        assert!(blend_png(&input, &turned, 0.5).is_err());
    }

    /// The memory rule, against figures worked by hand: a quarter of 8 GiB is 2,048 MiB, which
    /// holds 12 workers of 160 MiB (12.8); 2 GiB holds 3 (3.2); half a GiB none, so one.
    #[test]
    fn cpu_workers_fit_a_quarter_of_the_memory() {
        assert_eq!(
            CPU_WORKER_MIB, 160,
            "the figures below assume 160 MiB a worker"
        );
        assert_eq!(cpu_workers(15, false, 8.0), 12);
        assert_eq!(cpu_workers(7, false, 8.0), 7);
        assert_eq!(cpu_workers(7, false, 2.0), 3);
        assert_eq!(cpu_workers(7, false, 0.5), 1);
        // The person's own number stands; without the browser's figure, so does the wish.
        assert_eq!(cpu_workers(15, true, 0.5), 15);
        assert_eq!(cpu_workers(40, true, 0.0), 16, "at most 16");
        assert_eq!(cpu_workers(5, false, 0.0), 5);
        assert_eq!(cpu_workers(5, false, f64::NAN), 5);
        assert_eq!(cpu_workers(0, false, 8.0), 1);
    }

    /// The CPU tile's memory cap against figures worked by hand (2,200 bytes a pixel): a
    /// quarter of 8 GiB on 3 workers is 715,827,882 bytes each, 325,376 pixels, a side of 570:
    /// capped to 512; on 8 workers 122,016 pixels, a side of 349, 344 by 8; on 16, 61,008
    /// pixels, 246: raised to 256. A 512x512 photo on one worker is then one tile, on 8
    /// workers no tile is above 344.
    #[test]
    fn cpu_tiles_fit_a_quarter_of_the_memory() {
        assert_eq!(
            CPU_TILE_BYTES_PER_PIXEL, 2200.0,
            "the figures below assume it"
        );
        assert_eq!(cpu_tile(512, 512, 1, 8.0), 512);
        assert_eq!(
            cpu_tile(512, 512, 1, 0.0),
            512,
            "8 GiB where the browser does not tell"
        );
        assert_eq!(
            cpu_tile(4000, 3000, 3, 8.0),
            model::tiling::balanced_tile(4000, 3000, 3, [256, 512])
        );
        assert_eq!(
            cpu_tile(4000, 3000, 8, 8.0),
            model::tiling::balanced_tile(4000, 3000, 8, [256, 344])
        );
        assert!(cpu_tile(4000, 3000, 8, 8.0) <= 344);
        assert_eq!(
            cpu_tile(4000, 3000, 16, 8.0),
            model::tiling::balanced_tile(4000, 3000, 16, [256, 256])
        );
        assert_eq!(cpu_tile(4000, 3000, 16, 8.0), 256);
        // Half a GiB on one worker: 134,217,728 bytes, 61,008 pixels: the smallest side.
        assert_eq!(cpu_tile(4000, 3000, 1, 0.5), 256);
    }

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
