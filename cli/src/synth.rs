//! Rain synthesis: streak layers added onto clean photos to make training pairs.
//!
//! A streak is a thin straight segment with a Gaussian cross-section and soft, tapered ends,
//! drawn along a per-image dominant direction with a small per-streak jitter, then smeared
//! along that direction (motion blur), after the photometric streak model of Garg & Nayar
//! (a falling drop is a bright, blurred, translucent line). Each streak draws its own length,
//! width and brightness, so a layer mixes long and short, faint and bright streaks.
//!
//! The presets cover what people photograph and what the benchmarks hold:
//! - `light`: one layer of sparse, thin, faint, parallel streaks (Rain100L, Yang et al. 2017);
//! - `heavy`: three to five layers of denser streaks in a few nearby directions, near layers
//!   longer and wider, under a bright veil of rain accumulation (Rain100H, Yang et al. 2017);
//! - `varied`: one or two layers over the wide range of orientations and magnitudes of
//!   Rain1400 (Fu et al. 2017), from a drizzle to a downpour;
//! - `depth`: depth-aware rain and fog (Hu et al. 2019) over a pseudo-depth of the photo (far
//!   at the top, near at the bottom, a random horizon): near streaks long, wide, blurred and
//!   sparse, far ones thin, dense and dim, each hidden behind scene points nearer than itself,
//!   and fog that thickens with depth;
//! - `splash`: rain falling onto the ground, as in a downpour: one to three layers of streaks
//!   without a veil, over a field of splashes below a random ground line (dense, tiny, bright
//!   specks in every direction, which a network must take off without darkening what lies
//!   under them: the wet road of a real downpour).
//!
//! And `none`: no rain at all, the photo as its own rainy input. Mixed into training it shows
//! the network rain-free photos to leave alone (rain always adds light, and the veil and fog
//! brighten evenly, so a network that only ever sees rain learns to darken everything a
//! little); as a validation set it measures how far the network moves a clean photo.
//!
//! Layers combine with the photo additively (clipped), as Rain100L/H are made, or by screen
//! blending; the veil and fog mix in atmospheric light `A`: `y = y * t + A * (1 - t)`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How the rain layer is combined with the photo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Blend {
    /// `y = clip(x + r)`, as Rain100L/H are made.
    Additive,
    /// `y = 1 - (1 - x)(1 - r)`: never clips, softer on bright backgrounds.
    Screen,
}

/// The ranges each image's rain is drawn from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RainConfig {
    /// Streaks per 10,000 pixels, per layer.
    pub density: (f32, f32),
    /// Streak length in pixels.
    pub length: (f32, f32),
    /// Streak width (Gaussian sigma across the streak) in pixels.
    pub width: (f32, f32),
    /// Dominant angle from vertical, degrees.
    pub angle: (f32, f32),
    /// Per-streak deviation from the dominant angle, degrees.
    pub jitter: f32,
    /// Per-layer deviation from the image's dominant angle, degrees (wind turns slowly).
    pub layer_spread: f32,
    /// Peak streak intensity added to the photo.
    pub brightness: (f32, f32),
    /// Motion blur length along the streak, pixels.
    pub blur: (f32, f32),
    /// Number of layers (each with its own direction and scale).
    pub layers: (usize, usize),
    /// Veil of rain accumulation: fraction of atmospheric light mixed in evenly (0 = none).
    pub haze: (f32, f32),
    /// Depth-aware rain and fog (see the module doc): fog density at the far end, as the
    /// exponent of the transmission `exp(-fog * depth)`; `(0, 0)` turns depth off.
    pub fog: (f32, f32),
    /// Splashes on the ground, per 10,000 pixels below a random ground line: tiny bright
    /// specks in every direction (see [`RainConfig::splash`]); `(0, 0)` draws none.
    #[serde(default)]
    pub splash: (f32, f32),
    /// How the streaks combine with the photo.
    pub blend: Blend,
}

impl RainConfig {
    /// Light rain: one layer of thin, faint, mostly parallel streaks (Rain100L-like).
    pub fn light() -> Self {
        Self {
            density: (8.0, 24.0),
            length: (8.0, 30.0),
            width: (0.4, 0.8),
            angle: (-25.0, 25.0),
            jitter: 3.0,
            layer_spread: 0.0,
            brightness: (0.25, 0.6),
            blur: (2.0, 6.0),
            layers: (1, 1),
            haze: (0.0, 0.0),
            fog: (0.0, 0.0),
            splash: (0.0, 0.0),
            blend: Blend::Additive,
        }
    }

    /// Heavy rain: three to five layers of dense, straight streaks in a few nearby directions,
    /// near layers longer and wider, under a veil of accumulation (Rain100H-like).
    pub fn heavy() -> Self {
        Self {
            density: (10.0, 30.0),
            length: (12.0, 45.0),
            width: (0.4, 1.0),
            angle: (-30.0, 30.0),
            jitter: 2.0,
            layer_spread: 5.0,
            brightness: (0.2, 0.65),
            blur: (2.0, 8.0),
            layers: (3, 5),
            haze: (0.08, 0.3),
            fog: (0.0, 0.0),
            splash: (0.0, 0.0),
            blend: Blend::Additive,
        }
    }

    /// Rain1400-like: one or two layers over a wide range of directions, densities, lengths
    /// and widths.
    pub fn varied() -> Self {
        Self {
            density: (4.0, 45.0),
            length: (6.0, 70.0),
            width: (0.3, 1.3),
            angle: (-40.0, 40.0),
            jitter: 3.0,
            layer_spread: 6.0,
            brightness: (0.15, 0.7),
            blur: (1.0, 10.0),
            layers: (1, 2),
            haze: (0.0, 0.1),
            fog: (0.0, 0.0),
            splash: (0.0, 0.0),
            blend: Blend::Screen,
        }
    }

    /// Depth-aware rain and fog (Hu et al. 2019-like): layers at several depths over a
    /// pseudo-depth map, fog thickening with depth.
    pub fn depth() -> Self {
        Self {
            density: (8.0, 24.0),
            length: (10.0, 40.0),
            width: (0.4, 0.9),
            angle: (-25.0, 25.0),
            jitter: 2.0,
            layer_spread: 4.0,
            brightness: (0.25, 0.7),
            blur: (2.0, 8.0),
            layers: (3, 4),
            haze: (0.0, 0.0),
            fog: (0.3, 1.6),
            splash: (0.0, 0.0),
            blend: Blend::Additive,
        }
    }

    /// Rain onto the ground: one to three layers of streaks without a veil, over a field of
    /// splashes below a random ground line (often the whole patch). Real downpours cover the
    /// road in bright specks too dense and small to be streaks; taken for a veil they come
    /// back as dark blotches (WEIGHTS.md, known failures).
    pub fn splash() -> Self {
        Self {
            density: (6.0, 24.0),
            length: (10.0, 45.0),
            width: (0.4, 1.0),
            angle: (-25.0, 25.0),
            jitter: 2.0,
            layer_spread: 4.0,
            brightness: (0.2, 0.6),
            blur: (2.0, 8.0),
            layers: (1, 3),
            haze: (0.0, 0.0),
            fog: (0.0, 0.0),
            splash: (300.0, 1200.0),
            blend: Blend::Additive,
        }
    }

    /// The specks of [`RainConfig::splash`]'s field drawn as streaks: one to five pixels long,
    /// any direction, sharp (no motion blur), at `density` per 10,000 pixels.
    fn specks(density: (f32, f32)) -> Self {
        Self {
            density,
            length: (1.0, 5.0),
            width: (0.35, 0.9),
            angle: (0.0, 0.0),
            jitter: 90.0,
            brightness: (0.15, 0.6),
            blur: (0.0, 0.0),
            // One layer, added, no veil, fog or splashes of its own.
            ..Self::light()
        }
    }

    /// No rain: every layer, veil and fog off, so the rainy image is the clean one.
    pub fn none() -> Self {
        Self {
            density: (0.0, 0.0),
            layers: (0, 0),
            haze: (0.0, 0.0),
            fog: (0.0, 0.0),
            ..Self::light()
        }
    }

    /// Whether the preset draws any rain, veil or fog at all (`none` does not).
    pub fn rains(&self) -> bool {
        let layers = self.layers.1 > 0 && self.density.1 > 0.0;
        layers || self.haze.1 > 0.0 || self.fog.1 > 0.0 || self.splash.1 > 0.0
    }

    /// A drawn preset by name (`light`, `heavy`, `varied`, `depth`, `splash` or `none`; the
    /// names of every preset are [`crate::rain::Preset::NAMES`]).
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::none()),
            "light" => Some(Self::light()),
            "heavy" => Some(Self::heavy()),
            "varied" => Some(Self::varied()),
            "depth" => Some(Self::depth()),
            "splash" => Some(Self::splash()),
            _ => None,
        }
    }
}

/// A uniform draw from `[lo, hi)`, or `lo` where the range is empty.
pub(crate) fn uniform(rng: &mut StdRng, (lo, hi): (f32, f32)) -> f32 {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

/// How one layer of streaks is drawn.
struct Layer<'a> {
    /// Dominant direction, degrees from vertical.
    angle: f32,
    /// Size of its streaks (length, width, blur) relative to the config's ranges.
    scale: f32,
    /// Density relative to the config's.
    density: f32,
    /// Brightness relative to the config's.
    brightness: f32,
    /// With depth: the layer's depth and the scene's, so that scene points nearer than the
    /// layer hide its streaks.
    depth: Option<(f32, &'a [f32])>,
    /// The row the layer's streaks start below (0: everywhere); they fade in over the first
    /// tenth of the image's height below it.
    ground: f32,
}

impl Layer<'static> {
    /// A layer as its config draws it (vertical, at the config's scale, density and
    /// brightness, no depth), its streaks below row `ground`.
    fn plain(ground: f32) -> Self {
        Self {
            angle: 0.0,
            scale: 1.0,
            density: 1.0,
            brightness: 1.0,
            depth: None,
            ground,
        }
    }
}

/// Adds a layer onto the rain so far by screen blending: `r = 1 - (1 - r)(1 - v)`.
fn screen(rain: &mut [f32], layer: Vec<f32>) {
    for (r, v) in rain.iter_mut().zip(layer) {
        *r = 1.0 - (1.0 - *r) * (1.0 - v);
    }
}

/// Draw one layer of streaks into a `w` x `h` map.
fn streak_layer(
    w: usize,
    h: usize,
    layer: &Layer,
    config: &RainConfig,
    rng: &mut StdRng,
) -> Vec<f32> {
    let mut map = vec![0f32; w * h];
    let angle = layer.angle.to_radians();
    let density = uniform(rng, config.density) * layer.density;
    let scale = rng.random_range(0.7f32..1.3) * layer.scale;
    let blur = uniform(rng, config.blur) * layer.scale;
    // Within the image (`clamp` would panic on an image of no rows).
    let ground = layer.ground.min(h as f32 - 1.0).max(0.0);
    let count = (w as f32 * (h as f32 - ground) / 10_000.0 * density).round() as usize;
    for _ in 0..count {
        let theta = angle
            + rng
                .random_range(-config.jitter..=config.jitter)
                .to_radians();
        let (dx, dy) = (theta.sin(), theta.cos());
        let length = uniform(rng, config.length) * scale + blur;
        let sigma = uniform(rng, config.width) * scale.sqrt();
        let mut peak = uniform(rng, config.brightness) * layer.brightness;
        let (cx, cy) = (
            rng.random_range(0.0..w as f32),
            rng.random_range(ground..h as f32),
        );
        if ground > 0.0 {
            peak *= ((cy - ground) / (0.1 * h as f32)).min(1.0);
        }
        let half = length / 2.0;
        let reach = (3.0 * sigma).max(1.0);
        let (x0, x1) = (
            (cx - half * dx.abs() - reach).floor().max(0.0) as usize,
            (cx + half * dx.abs() + reach).ceil().min(w as f32 - 1.0) as usize,
        );
        let (y0, y1) = (
            (cy - half * dy.abs() - reach).floor().max(0.0) as usize,
            (cy + half * dy.abs() + reach).ceil().min(h as f32 - 1.0) as usize,
        );
        for y in y0..=y1 {
            for x in x0..=x1 {
                if let Some((depth, scene)) = layer.depth {
                    if scene[y * w + x] < depth {
                        continue;
                    }
                }
                let (px, py) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                let along = px * dx + py * dy;
                let across = px * dy - py * dx;
                if along.abs() > half || across.abs() > reach {
                    continue;
                }
                // Tapered ends (motion-blurred drop), Gaussian cross-section.
                let taper = ((half - along.abs()) / blur.max(1.0)).min(1.0);
                let v = peak * taper * (-(across * across) / (2.0 * sigma * sigma)).exp();
                let p = &mut map[y * w + x];
                *p = p.max(v);
            }
        }
    }
    map
}

/// A pseudo-depth map in [0, 1] (0 near, 1 far): the ground recedes from the bottom edge to a
/// random, slightly tilted horizon; above it everything is far.
fn pseudo_depth(w: usize, h: usize, rng: &mut StdRng) -> Vec<f32> {
    let horizon = rng.random_range(0.15f32..0.6) * h as f32;
    let tilt = rng.random_range(-0.15f32..0.15) * h as f32;
    let gamma = rng.random_range(0.6f32..1.6);
    let mut depth = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let line = horizon + tilt * (x as f32 / w.max(1) as f32 - 0.5);
            let below = (h as f32 - y as f32) / (h as f32 - line).max(1.0);
            depth[y * w + x] = below.clamp(0.0, 1.0).powf(gamma);
        }
    }
    depth
}

/// A clean planar RGB image `[3, H, W]` in [0, 1] made rainy. Returns (rainy, rain layer);
/// the rain layer is `rainy - clean` (what a rain-supervised loss targets).
pub fn add_rain(
    clean: &[f32],
    w: usize,
    h: usize,
    config: &RainConfig,
    rng: &mut StdRng,
) -> (Vec<f32>, Vec<f32>) {
    let n = w * h;
    let layers = rng.random_range(config.layers.0..=config.layers.1.max(config.layers.0));
    let fog = uniform(rng, config.fog);
    let scene = (fog > 0.0).then(|| pseudo_depth(w, h, rng));
    let mut rain = vec![0f32; n];
    let dominant = uniform(rng, config.angle);
    for k in 0..layers {
        let spread = config.layer_spread;
        let angle = dominant
            + if spread > 0.0 {
                rng.random_range(-spread..spread)
            } else {
                0.0
            };
        // Layers from near to far: with several, near ones hold bigger, sparser streaks.
        let depth = if layers > 1 {
            (k as f32 + rng.random_range(0.0f32..1.0)) / layers as f32
        } else {
            0.5
        };
        let scale = if layers > 1 { 1.6 - depth * 1.1 } else { 1.0 };
        let layer = Layer {
            angle,
            scale,
            density: 1.0 / scale,
            // Far rain is dimmer, and with depth it is also seen through fog.
            brightness: if layers > 1 { 1.15 - 0.4 * depth } else { 1.0 } * (-fog * depth).exp(),
            depth: scene.as_deref().map(|scene| (depth, scene)),
            ground: 0.0,
        };
        screen(&mut rain, streak_layer(w, h, &layer, config, rng));
    }
    // Drawn only where the preset splashes, so that the other presets keep their draws.
    if config.splash.1 > 0.0 {
        let ground = Layer::plain(rng.random_range(-0.3f32..0.6).max(0.0) * h as f32);
        let specks = RainConfig::specks(config.splash);
        screen(&mut rain, streak_layer(w, h, &ground, &specks, rng));
    }
    let haze = uniform(rng, config.haze);
    let light = rng.random_range(0.75f32..0.95);
    let mut rainy = vec![0f32; 3 * n];
    for c in 0..3 {
        for i in 0..n {
            let x = clean[c * n + i];
            let wet = match config.blend {
                Blend::Additive => (x + rain[i]).min(1.0),
                Blend::Screen => 1.0 - (1.0 - x) * (1.0 - rain[i]),
            };
            let veil = match &scene {
                Some(depth) => 1.0 - (-fog * depth[i]).exp(),
                None => haze,
            };
            rainy[c * n + i] = wet * (1.0 - veil) + light * veil;
        }
    }
    let layer = rainy.iter().zip(clean).map(|(y, x)| y - x).collect();
    (rainy, layer)
}

/// A seeded generator for image `index` of a run with `seed`: the same pair every time.
pub fn rng_for(seed: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(w: usize, h: usize, v: f32) -> Vec<f32> {
        vec![v; 3 * w * h]
    }

    #[test]
    fn the_same_seed_gives_the_same_rain() {
        let clean = gray(64, 48, 0.3);
        let a = add_rain(&clean, 64, 48, &RainConfig::light(), &mut rng_for(7, 1));
        let b = add_rain(&clean, 64, 48, &RainConfig::light(), &mut rng_for(7, 1));
        let c = add_rain(&clean, 64, 48, &RainConfig::light(), &mut rng_for(7, 2));
        assert_eq!(a, b);
        assert_ne!(a.0, c.0);
    }

    #[test]
    fn rain_brightens_sparsely_and_heavy_rain_more_than_light() {
        let (w, h) = (200, 150);
        let clean = gray(w, h, 0.3);
        let mean_added = |config: RainConfig| {
            let mut total = 0.0;
            for seed in 0..5 {
                let (rainy, layer) = add_rain(&clean, w, h, &config, &mut rng_for(seed, 0));
                assert!(rainy.iter().all(|v| (0.0..=1.0).contains(v)));
                assert!(
                    layer.iter().all(|v| *v >= -1e-6),
                    "rain only adds light on a dark photo"
                );
                total += layer.iter().sum::<f32>() / layer.len() as f32;
            }
            total / 5.0
        };
        let (light, heavy) = (
            mean_added(RainConfig::light()),
            mean_added(RainConfig::heavy()),
        );
        assert!(light > 0.002 && light < 0.08, "light rain adds {light}");
        assert!(heavy > 2.0 * light, "heavy {heavy} vs light {light}");
        for name in ["varied", "depth"] {
            let added = mean_added(RainConfig::preset(name).unwrap());
            assert!(added > light, "{name} adds {added}, light {light}");
        }
    }

    #[test]
    fn depth_rain_fogs_the_far_scene_more_than_the_near() {
        // The pseudo-depth is far at the top and near at the bottom: the fog lifts the top
        // rows of a dark photo more than the bottom rows, in every seeded image.
        let (w, h) = (96, 160);
        let clean = gray(w, h, 0.1);
        for seed in 0..4 {
            let (rainy, _) = add_rain(&clean, w, h, &RainConfig::depth(), &mut rng_for(seed, 0));
            let band = |rows: std::ops::Range<usize>| {
                let count = (rows.len() * w) as f32;
                rows.flat_map(|y| (0..w).map(move |x| y * w + x))
                    .map(|i| rainy[i])
                    .sum::<f32>()
                    / count
            };
            let (top, bottom) = (band(0..16), band(h - 16..h));
            assert!(
                top > bottom + 0.05,
                "seed {seed}: top {top}, bottom {bottom}"
            );
        }
    }

    #[test]
    fn no_rain_leaves_the_photo_as_it_is() {
        // Against the photo itself: `none` must return it bit for bit (a bright pixel
        // included, where additive blending would clip), with a zero rain layer.
        let (w, h) = (40, 30);
        let clean: Vec<f32> = (0..3 * w * h).map(|i| (i % 97) as f32 / 96.0).collect();
        for seed in 0..4 {
            let (rainy, rain) = add_rain(&clean, w, h, &RainConfig::none(), &mut rng_for(seed, 0));
            assert_eq!(rainy, clean, "seed {seed}");
            assert!(rain.iter().all(|&r| r == 0.0), "seed {seed}");
        }
    }

    #[test]
    fn splashes_stay_below_the_ground_line_and_fill_it_densely() {
        // A field of specks below row 60 of 120: nothing above it (a speck of 5 pixels and a
        // sigma of 0.9 reaches 6 rows up at most), and a tenth of the ground lit or more (400
        // specks of a few pixels each per 10,000 pixels).
        let (w, h) = (120, 120);
        let ground = Layer::plain(60.0);
        let specks = RainConfig::specks((400.0, 400.0));
        for seed in 0..4 {
            let map = streak_layer(w, h, &ground, &specks, &mut rng_for(seed, 0));
            assert!(map[..53 * w].iter().all(|&v| v == 0.0), "seed {seed}");
            let lit = map[70 * w..].iter().filter(|&&v| v > 0.05).count();
            assert!(lit > 50 * w / 10, "seed {seed}: {lit} of {} lit", 50 * w);
        }
    }

    #[test]
    fn the_splash_preset_adds_specks_to_the_ground_and_no_veil() {
        // Against the same preset without its splashes (the same seed draws the same streaks
        // first): the specks only add light, more of it to the bottom rows (always below the
        // ground line) than to the top sixth (below it in about half the draws), and
        // nothing lifts the photo evenly (no veil: some pixels stay as they were).
        let (w, h) = (96, 96);
        let clean = gray(w, h, 0.1);
        let dry = RainConfig {
            splash: (0.0, 0.0),
            ..RainConfig::splash()
        };
        let (mut top, mut bottom) = (0.0, 0.0);
        for seed in 0..8 {
            let (wet, rain) = add_rain(&clean, w, h, &RainConfig::splash(), &mut rng_for(seed, 0));
            let (streaks, _) = add_rain(&clean, w, h, &dry, &mut rng_for(seed, 0));
            let specks: Vec<f32> = wet.iter().zip(&streaks).map(|(a, b)| a - b).collect();
            assert!(specks.iter().all(|&v| v >= -1e-6), "seed {seed}");
            top += specks[..16 * w].iter().sum::<f32>();
            bottom += specks[(h - 16) * w..h * w].iter().sum::<f32>();
            assert!(rain.contains(&0.0), "seed {seed}: an even veil");
        }
        assert!(
            bottom > 1.5 * top && bottom > 0.0,
            "top {top}, bottom {bottom}"
        );
    }

    #[test]
    fn streaks_follow_the_dominant_direction() {
        // Vertical rain: intensity varies much more across x than along y.
        let config = RainConfig {
            jitter: 0.0,
            ..RainConfig::light()
        };
        let (w, h) = (120, 120);
        let layer = streak_layer(w, h, &Layer::plain(0.0), &config, &mut rng_for(3, 0));
        let (mut dx, mut dy) = (0.0, 0.0);
        for y in 1..h {
            for x in 1..w {
                dx += (layer[y * w + x] - layer[y * w + x - 1]).abs();
                dy += (layer[y * w + x] - layer[(y - 1) * w + x]).abs();
            }
        }
        assert!(dx > 3.0 * dy, "dx {dx} dy {dy}");
    }
}
