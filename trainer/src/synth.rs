//! Rain synthesis: streak layers added onto clean photos to make training pairs.
//!
//! A streak is a thin segment with a Gaussian cross-section and soft, tapered ends, drawn
//! along a per-image dominant direction with a small per-streak jitter, then smeared along
//! that direction (motion blur). Light rain is one such layer of thin, faint streaks, as in
//! Rain100L; heavy rain stacks several layers of different direction, length and width and
//! adds haze. Layers combine with the photo additively (clipped), or by screen blending.

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
    /// Haze: fraction of atmospheric light mixed in (0 = none).
    pub haze: (f32, f32),
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
            blend: Blend::Additive,
        }
    }

    /// Heavy rain: up to four layers of denser, longer, wider streaks and haze (Rain100H-like).
    pub fn heavy() -> Self {
        Self {
            density: (6.0, 20.0),
            length: (20.0, 70.0),
            width: (0.5, 1.4),
            angle: (-35.0, 35.0),
            jitter: 4.0,
            layer_spread: 8.0,
            brightness: (0.3, 0.8),
            blur: (3.0, 10.0),
            layers: (2, 4),
            haze: (0.05, 0.3),
            blend: Blend::Additive,
        }
    }

    /// A preset by name.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "light" => Some(Self::light()),
            "heavy" => Some(Self::heavy()),
            _ => None,
        }
    }
}

fn uniform(rng: &mut StdRng, (lo, hi): (f32, f32)) -> f32 {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

/// Draw one layer of streaks, around `angle` degrees from vertical, into a `w` x `h` map.
fn streak_layer(w: usize, h: usize, angle: f32, config: &RainConfig, rng: &mut StdRng) -> Vec<f32> {
    let mut layer = vec![0f32; w * h];
    let angle = angle.to_radians();
    let density = uniform(rng, config.density);
    let scale = rng.random_range(0.7f32..1.3);
    let blur = uniform(rng, config.blur);
    let count = ((w * h) as f32 / 10_000.0 * density).round() as usize;
    for _ in 0..count {
        let theta = angle
            + rng
                .random_range(-config.jitter..=config.jitter)
                .to_radians();
        let (dx, dy) = (theta.sin(), theta.cos());
        let length = uniform(rng, config.length) * scale + blur;
        let sigma = uniform(rng, config.width) * scale.sqrt();
        let peak = uniform(rng, config.brightness);
        let (cx, cy) = (
            rng.random_range(0.0..w as f32),
            rng.random_range(0.0..h as f32),
        );
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
                let (px, py) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                let along = px * dx + py * dy;
                let across = px * dy - py * dx;
                if along.abs() > half || across.abs() > reach {
                    continue;
                }
                // Tapered ends (motion-blurred drop), Gaussian cross-section.
                let taper = ((half - along.abs()) / blur.max(1.0)).min(1.0);
                let v = peak * taper * (-(across * across) / (2.0 * sigma * sigma)).exp();
                let p = &mut layer[y * w + x];
                *p = p.max(v);
            }
        }
    }
    layer
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
    let mut rain = vec![0f32; n];
    let dominant = uniform(rng, config.angle);
    for _ in 0..layers {
        let spread = config.layer_spread;
        let angle = dominant
            + if spread > 0.0 {
                rng.random_range(-spread..spread)
            } else {
                0.0
            };
        for (r, v) in rain.iter_mut().zip(streak_layer(w, h, angle, config, rng)) {
            *r = 1.0 - (1.0 - *r) * (1.0 - v);
        }
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
            rainy[c * n + i] = wet * (1.0 - haze) + light * haze;
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
    }

    #[test]
    fn streaks_follow_the_dominant_direction() {
        // Vertical rain: intensity varies much more across x than along y.
        let config = RainConfig {
            jitter: 0.0,
            ..RainConfig::light()
        };
        let (w, h) = (120, 120);
        let layer = streak_layer(w, h, 0.0, &config, &mut rng_for(3, 0));
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
