//! Rendered rain: layers of Garg and Nayar's rain streak database ("Photorealistic Rendering
//! of Rain Streaks", SIGGRAPH 2006), the photometric model of falling drops that much of the
//! deraining literature renders its synthetic rain from (Rain100L/H, Rain1400 and their kin
//! start from such layers).
//!
//! A layer of the database is light streaks on black, 8-bit grayscale, at one of five
//! orientations. Each image's rain takes one or more layers, each drawn at random from the
//! database, then randomly flipped, rotated, scaled and cropped (a view of the layer through a
//! window the size of the image), blurred with a Gaussian of a drawn width, thinned (the
//! faintest streaks taken away, for sparser rain) and scaled in brightness; the layers add
//! onto the photo, clipped: `y = min(x + Σ a·r, 1)`. Heavy rain adds a veil of rain
//! accumulation over it, as the drawn heavy preset does: `y = y·(1 − t) + A·t`.
//!
//! The view is centred anywhere on the layer; where it reaches past the layer's edges (near an
//! edge, or on an image larger than the layer: about 320 x 560 pixels at scale 1) it sees the
//! layer mirrored, so a large photo's rain repeats, mirrored, with the layer's size.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::synth::uniform;

/// Where the streak layers are unless a config or `--streaks` says otherwise (relative to
/// the repository root, like the configs' data folders).
pub const DEFAULT_FOLDER: &str = "../shared/data/streaks/garg-nayar";

/// One grayscale streak layer of the database.
struct Layer {
    width: usize,
    height: usize,
    /// Row-major intensities in [0, 1].
    pixels: Vec<f32>,
}

impl Layer {
    /// Bilinear sample at (x, y) in pixel units, the layer mirrored past its edges.
    fn sample(&self, x: f32, y: f32) -> f32 {
        let (w, h) = (self.width as isize, self.height as isize);
        let (fx, fy) = (x - 0.5, y - 0.5);
        let (x0, y0) = (fx.floor(), fy.floor());
        let (tx, ty) = (fx - x0, fy - y0);
        let (x0, y0) = (x0 as isize, y0 as isize);
        // Mirrored past the edges: a streak that meets an edge goes on as its reflection
        // (near-vertical rain crossing a horizontal edge goes on as itself), where repeating
        // the layer would cut every streak along a visible line.
        let mirror = |v: isize, n: isize| {
            let m = v.rem_euclid(2 * n);
            (if m >= n { 2 * n - 1 - m } else { m }) as usize
        };
        let at = |x: isize, y: isize| self.pixels[mirror(y, h) * self.width + mirror(x, w)];
        let top = at(x0, y0) * (1.0 - tx) + at(x0 + 1, y0) * tx;
        let bottom = at(x0, y0 + 1) * (1.0 - tx) + at(x0 + 1, y0 + 1) * tx;
        top * (1.0 - ty) + bottom * ty
    }
}

/// The streak layers of one folder, loaded once (about 150 MB for the whole database).
pub struct StreakBank {
    layers: Vec<Layer>,
}

impl StreakBank {
    /// Every image file of `folder` as a grayscale layer. A missing folder, or one without a
    /// readable image, is an error that names it.
    pub fn load(folder: &Path) -> Result<Self> {
        use rayon::prelude::*;
        let advice = "the rendered rain presets need the rain streak layers of Garg and Nayar's \
            database (grayscale PNGs of light streaks on black, e.g. ../shared/data/streaks/garg-nayar): \
            give their folder as `streaks` in the training config or --streaks";
        if !folder.is_dir() {
            bail!(
                "streak folder {} does not exist: {advice}",
                folder.display()
            );
        }
        let files = model::io::image_files(folder)?;
        if files.is_empty() {
            bail!(
                "streak folder {} holds no images: {advice}",
                folder.display()
            );
        }
        let layers = files
            .par_iter()
            .map(|path| {
                let gray = image::open(path)
                    .with_context(|| format!("cannot read streak layer {}", path.display()))?
                    .to_luma8();
                let (width, height) = (gray.width() as usize, gray.height() as usize);
                if width < 16 || height < 16 {
                    bail!("streak layer {} is smaller than 16x16", path.display());
                }
                let pixels = gray.as_raw().iter().map(|&v| v as f32 / 255.0).collect();
                Ok(Layer {
                    width,
                    height,
                    pixels,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }
}

/// The ranges each image's rendered rain is drawn from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RenderedConfig {
    /// Number of layers (each drawn from the database on its own).
    pub layers: (usize, usize),
    /// Scale of a layer on the photo (2 = streaks twice as long and wide).
    pub scale: (f32, f32),
    /// Rotation of a layer on top of its own orientation, degrees either way.
    pub rotation: f32,
    /// Gaussian blur of a layer, sigma in pixels of the photo.
    pub blur: (f32, f32),
    /// Thinning: the fraction of the intensity range taken off the bottom (0 keeps every
    /// streak; 0.5 keeps only the streaks brighter than half, rescaled to full range).
    pub thinning: (f32, f32),
    /// Brightness: the layer's intensity is multiplied by this before it is added.
    pub brightness: (f32, f32),
    /// Veil of rain accumulation: fraction of atmospheric light mixed in evenly (0 = none).
    pub haze: (f32, f32),
}

impl RenderedConfig {
    /// Light rendered rain: one layer, lightly thinned (Rain100L-like: the rainy inputs of
    /// Set5 and Set14 score about 26 dB, Rain100L's 26.9).
    pub fn light() -> Self {
        Self {
            layers: (1, 1),
            scale: (0.5, 1.3),
            rotation: 10.0,
            blur: (0.0, 0.6),
            thinning: (0.0, 0.1),
            brightness: (1.1, 1.9),
            haze: (0.0, 0.0),
        }
    }

    /// Heavy rendered rain: two to four layers under a veil (Rain100H-like).
    pub fn heavy() -> Self {
        Self {
            layers: (2, 4),
            scale: (0.6, 1.6),
            rotation: 8.0,
            blur: (0.3, 1.5),
            thinning: (0.0, 0.05),
            brightness: (0.8, 1.4),
            haze: (0.05, 0.25),
        }
    }
}

/// One layer of rendered rain for a `w` x `h` image, intensities in [0, 1].
fn render_layer(
    w: usize,
    h: usize,
    config: &RenderedConfig,
    bank: &StreakBank,
    rng: &mut StdRng,
) -> Vec<f32> {
    let layer = &bank.layers[rng.random_range(0..bank.layers.len())];
    let scale = uniform(rng, config.scale).max(0.05);
    let angle = rng
        .random_range(-config.rotation..=config.rotation)
        .to_radians();
    let flip = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
    let centre = (
        rng.random_range(0.0..layer.width as f32),
        rng.random_range(0.0..layer.height as f32),
    );
    let (sin, cos) = angle.sin_cos();
    let mut map = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let u = (x as f32 + 0.5 - w as f32 / 2.0) * flip;
            let v = y as f32 + 0.5 - h as f32 / 2.0;
            let (su, sv) = ((cos * u - sin * v) / scale, (sin * u + cos * v) / scale);
            map[y * w + x] = layer.sample(centre.0 + su, centre.1 + sv);
        }
    }
    let sigma = uniform(rng, config.blur);
    if sigma >= 0.3 {
        map = gaussian_blur(&map, w, h, sigma);
    }
    let thinning = uniform(rng, config.thinning).clamp(0.0, 0.95);
    let brightness = uniform(rng, config.brightness);
    for v in &mut map {
        *v = ((*v - thinning).max(0.0) / (1.0 - thinning) * brightness).min(1.0);
    }
    map
}

/// A separable Gaussian blur (sigma in pixels), edges clamped.
pub(crate) fn gaussian_blur(map: &[f32], w: usize, h: usize, sigma: f32) -> Vec<f32> {
    let radius = (3.0 * sigma).ceil() as isize;
    let taps: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = taps.iter().sum();
    let taps: Vec<f32> = taps.iter().map(|t| t / total).collect();
    let pass = |src: &[f32], along_x: bool| {
        let mut out = vec![0f32; w * h];
        for y in 0..h {
            for x in 0..w {
                let mut sum = 0.0;
                for (k, t) in taps.iter().enumerate() {
                    let d = k as isize - radius;
                    let (sx, sy) = if along_x {
                        ((x as isize + d).clamp(0, w as isize - 1) as usize, y)
                    } else {
                        (x, (y as isize + d).clamp(0, h as isize - 1) as usize)
                    };
                    sum += t * src[sy * w + sx];
                }
                out[y * w + x] = sum;
            }
        }
        out
    };
    pass(&pass(map, true), false)
}

/// A clean planar RGB image `[3, H, W]` in [0, 1] with rendered rain from `bank`. Returns
/// (rainy, rain layer), the rain layer being `rainy - clean`.
pub fn add_rendered_rain(
    clean: &[f32],
    w: usize,
    h: usize,
    config: &RenderedConfig,
    bank: &StreakBank,
    rng: &mut StdRng,
) -> (Vec<f32>, Vec<f32>) {
    let n = w * h;
    let layers = rng.random_range(config.layers.0..=config.layers.1.max(config.layers.0));
    let mut rain = vec![0f32; n];
    for _ in 0..layers {
        for (r, v) in rain.iter_mut().zip(render_layer(w, h, config, bank, rng)) {
            *r += v;
        }
    }
    let haze = uniform(rng, config.haze);
    let light = rng.random_range(0.75f32..0.95);
    let mut rainy = vec![0f32; 3 * n];
    for c in 0..3 {
        for i in 0..n {
            let wet = (clean[c * n + i] + rain[i]).min(1.0);
            rainy[c * n + i] = wet * (1.0 - haze) + light * haze;
        }
    }
    let layer = rainy.iter().zip(clean).map(|(y, x)| y - x).collect();
    (rainy, layer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::rng_for;

    /// A bank of two synthetic layers: vertical lines every 8 pixels (full and half bright).
    fn bank() -> StreakBank {
        let layer = |peak: f32| {
            let (width, height) = (64, 48);
            let pixels = (0..width * height)
                .map(|i| if i % width % 8 == 0 { peak } else { 0.0 })
                .collect();
            Layer {
                width,
                height,
                pixels,
            }
        };
        StreakBank {
            layers: vec![layer(1.0), layer(0.5)],
        }
    }

    /// One layer as it is drawn (scale 1, no rotation, blur or veil, brightness 1), thinned
    /// by `thinning`.
    fn as_drawn(thinning: f32) -> RenderedConfig {
        RenderedConfig {
            layers: (1, 1),
            scale: (1.0, 1.0),
            rotation: 0.0,
            blur: (0.0, 0.0),
            thinning: (thinning, thinning),
            brightness: (1.0, 1.0),
            haze: (0.0, 0.0),
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_rendered_rain() {
        let (w, h) = (40, 30);
        let clean = vec![0.3; 3 * w * h];
        let bank = bank();
        let config = RenderedConfig::heavy();
        let a = add_rendered_rain(&clean, w, h, &config, &bank, &mut rng_for(5, 1));
        let b = add_rendered_rain(&clean, w, h, &config, &bank, &mut rng_for(5, 1));
        let c = add_rendered_rain(&clean, w, h, &config, &bank, &mut rng_for(5, 2));
        assert_eq!(a, b);
        assert_ne!(a.0, c.0);
    }

    #[test]
    fn rendered_rain_only_adds_light_and_clips() {
        // Without a veil the rain layer is never negative, and a bright photo clips at 1.
        let (w, h) = (32, 32);
        let bank = bank();
        let config = RenderedConfig {
            brightness: (1.0, 1.0),
            thinning: (0.0, 0.0),
            ..RenderedConfig::light()
        };
        for seed in 0..4 {
            let clean = vec![0.9; 3 * w * h];
            let (rainy, layer) =
                add_rendered_rain(&clean, w, h, &config, &bank, &mut rng_for(seed, 0));
            assert!(rainy.iter().all(|v| (0.9..=1.0).contains(v)), "seed {seed}");
            assert!(layer.iter().all(|v| *v >= 0.0), "seed {seed}");
            assert!(
                rainy.contains(&1.0),
                "seed {seed}: a streak on 0.9 clips at 1"
            );
        }
    }

    #[test]
    fn an_unrotated_unscaled_layer_is_copied_as_it_is() {
        // Scale 1, no rotation, no blur, no thinning, brightness 1: the view is the layer
        // itself, shifted (its lines stay 8 pixels apart, at full or half brightness).
        let config = as_drawn(0.0);
        let (w, h) = (24, 10);
        let map = render_layer(w, h, &config, &bank(), &mut rng_for(1, 0));
        let row: Vec<f32> = map[..w].to_vec();
        // The view starts at a fractional position, so each line falls between two columns:
        // bilinear sampling splits it between them, and every 8 columns still hold one line's
        // whole intensity (1 or 0.5, the layer drawn), repeated with the layer's period.
        let period: f32 = row[..8].iter().sum();
        assert!(
            (period - 1.0).abs() < 1e-5 || (period - 0.5).abs() < 1e-5,
            "{row:?}"
        );
        for x in 0..w - 8 {
            assert!((row[x] - row[x + 8]).abs() < 1e-6, "{row:?}");
        }
        for y in 1..h {
            assert_eq!(
                &map[y * w..(y + 1) * w],
                &row[..],
                "vertical lines stay vertical"
            );
        }
    }

    #[test]
    fn thinning_keeps_only_the_brighter_streaks() {
        // Thinning 0.6 removes the half-bright layer's lines entirely.
        let config = as_drawn(0.6);
        let bank = StreakBank {
            layers: vec![bank().layers.remove(1)],
        };
        let map = render_layer(24, 10, &config, &bank, &mut rng_for(2, 0));
        assert!(map.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn a_missing_or_empty_streak_folder_is_named() {
        let root = std::env::temp_dir().join(format!("brn-streaks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let missing = root.join("absent");
        let err = format!("{:#}", StreakBank::load(&missing).err().unwrap());
        assert!(
            err.contains("absent") && err.contains("does not exist"),
            "{err}"
        );
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::write(root.join("empty/notes.txt"), b"no images").unwrap();
        let err = format!("{:#}", StreakBank::load(&root.join("empty")).err().unwrap());
        assert!(
            err.contains("empty") && err.contains("holds no images"),
            "{err}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_blur_keeps_the_mean_and_spreads_a_point() {
        let (w, h) = (21, 21);
        let mut map = vec![0f32; w * h];
        map[10 * w + 10] = 1.0;
        let blurred = gaussian_blur(&map, w, h, 1.5);
        let total: f32 = blurred.iter().sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        assert!(blurred[10 * w + 10] < 0.1 && blurred[10 * w + 12] > 0.01);
    }
}
