//! What a camera does to a rainy photo before anyone derains it: sensor noise and JPEG
//! compression, applied to the rainy input of a training pair only (the clean target stays
//! clean), so that the network meets in training the grain and the 8x8 blocks of the webcam
//! and phone photos it is used on.

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::synth::uniform;

/// The ranges a rainy input's degradations are drawn from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Degradations {
    /// The share of training inputs that are degraded at all (0 to 1); the others stay as the
    /// rain left them.
    pub probability: f32,
    /// Sensor noise: the standard deviation (of the [0, 1] range) of Gaussian noise added to
    /// each pixel and channel, half of it shared by the three channels (luminance grain) and
    /// half drawn per channel (colour grain); `[0, 0]` for none.
    #[serde(default)]
    pub noise: (f32, f32),
    /// JPEG quality (1 to 100) the input is compressed at, after the noise; `[0, 0]` for none.
    #[serde(default)]
    pub jpeg: (u8, u8),
}

impl Degradations {
    /// Refuse ranges that cannot be drawn from, saying which field is wrong.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.probability) {
            bail!("config: degrade.probability must be between 0 and 1");
        }
        let (lo, hi) = self.noise;
        if !(0.0..=0.5).contains(&lo) || !(0.0..=0.5).contains(&hi) || lo > hi {
            bail!("config: degrade.noise must be [low, high] with 0 <= low <= high <= 0.5");
        }
        let (lo, hi) = self.jpeg;
        if (lo, hi) != (0, 0) && !(1 <= lo && lo <= hi && hi <= 100) {
            bail!("config: degrade.jpeg must be [low, high] qualities with 1 <= low <= high <= 100, or [0, 0]");
        }
        Ok(())
    }

    /// Degrade a planar RGB image `[3, H, W]` in [0, 1] in place (or leave it, by the
    /// probability), drawing from `rng` alone.
    pub fn apply(&self, rgb: &mut [f32], w: usize, h: usize, rng: &mut StdRng) {
        if !rng.random_bool(self.probability.clamp(0.0, 1.0) as f64) {
            return;
        }
        let n = w * h;
        let sigma = uniform(rng, self.noise);
        if sigma > 0.0 {
            // Half the variance shared by the channels, half each channel's own.
            let half = sigma * 0.5f32.sqrt();
            for i in 0..n {
                let grain = half * gaussian(rng);
                for c in 0..3 {
                    let v = &mut rgb[c * n + i];
                    *v = (*v + grain + half * gaussian(rng)).clamp(0.0, 1.0);
                }
            }
        }
        if self.jpeg != (0, 0) {
            let quality = rng.random_range(self.jpeg.0..=self.jpeg.1);
            jpeg_round_trip(rgb, w, h, quality);
        }
    }
}

/// A standard normal draw (Box–Muller).
fn gaussian(rng: &mut StdRng) -> f32 {
    let u: f32 = rng.random_range(f32::EPSILON..1.0);
    let v: f32 = rng.random_range(0.0..1.0);
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

/// Compress the image as a JPEG of `quality` and decode it again, in place.
fn jpeg_round_trip(rgb: &mut [f32], w: usize, h: usize, quality: u8) {
    use image::codecs::jpeg::JpegEncoder;
    let interleaved = interleave(rgb, w * h);
    let mut bytes = Vec::new();
    let encoded = JpegEncoder::new_with_quality(&mut bytes, quality).encode(
        &interleaved,
        w as u32,
        h as u32,
        image::ExtendedColorType::Rgb8,
    );
    // Encoding 8-bit RGB of a valid size into memory does not fail; were it to, the input
    // simply stays uncompressed.
    if encoded.is_err() {
        return;
    }
    if let Ok(decoded) = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg) {
        let decoded = decoded.to_rgb8();
        let n = w * h;
        for (i, p) in decoded.pixels().enumerate().take(n) {
            for c in 0..3 {
                rgb[c * n + i] = p[c] as f32 / 255.0;
            }
        }
    }
}

/// Planar `[3, N]` in [0, 1] to interleaved 8-bit RGB.
fn interleave(rgb: &[f32], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 * n);
    for i in 0..n {
        for c in 0..3 {
            out.push(model::image::to_u8(rgb[c * n + i]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::rng_for;

    fn ramp(w: usize, h: usize) -> Vec<f32> {
        (0..3 * w * h)
            .map(|i| (i % w) as f32 / w as f32 * 0.8 + 0.1)
            .collect()
    }

    #[test]
    fn noise_has_the_drawn_strength_and_no_bias() {
        // Against the definition: sigma 0.05 on mid-grey gives residuals of std 0.05, mean 0.
        let (w, h) = (64, 64);
        let mut img = vec![0.5; 3 * w * h];
        let d = Degradations {
            probability: 1.0,
            noise: (0.05, 0.05),
            jpeg: (0, 0),
        };
        d.apply(&mut img, w, h, &mut rng_for(3, 0));
        let n = img.len() as f32;
        let mean = img.iter().map(|v| v - 0.5).sum::<f32>() / n;
        let std = (img.iter().map(|v| (v - 0.5 - mean).powi(2)).sum::<f32>() / n).sqrt();
        assert!(mean.abs() < 0.003, "mean {mean}");
        assert!((std - 0.05).abs() < 0.003, "std {std}");
    }

    #[test]
    fn jpeg_loses_more_at_low_quality() {
        let (w, h) = (48, 40);
        let clean: Vec<f32> = ramp(w, h)
            .iter()
            .enumerate()
            .map(|(i, v)| v + if (i / 3) % 2 == 0 { 0.05 } else { 0.0 })
            .collect();
        let error = |q: u8| {
            let mut img = clean.clone();
            jpeg_round_trip(&mut img, w, h, q);
            img.iter()
                .zip(&clean)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f32>()
        };
        let (low, high) = (error(20), error(95));
        assert!(high > 0.0, "a JPEG round trip changes the pixels");
        assert!(low > 2.0 * high, "q20 {low}, q95 {high}");
    }

    #[test]
    fn probability_zero_leaves_the_input_and_the_same_seed_repeats() {
        let (w, h) = (16, 16);
        let clean = ramp(w, h);
        let off = Degradations {
            probability: 0.0,
            noise: (0.1, 0.1),
            jpeg: (50, 50),
        };
        let mut img = clean.clone();
        off.apply(&mut img, w, h, &mut rng_for(1, 0));
        assert_eq!(img, clean);
        let on = Degradations {
            probability: 1.0,
            ..off
        };
        let (mut a, mut b) = (clean.clone(), clean.clone());
        on.apply(&mut a, w, h, &mut rng_for(1, 0));
        on.apply(&mut b, w, h, &mut rng_for(1, 0));
        assert_eq!(a, b);
        assert_ne!(a, clean);
    }

    #[test]
    fn bad_ranges_are_refused() {
        let ok = Degradations {
            probability: 0.5,
            noise: (0.0, 0.02),
            jpeg: (60, 95),
        };
        assert!(ok.validate().is_ok());
        for bad in [
            Degradations {
                probability: 1.5,
                ..ok.clone()
            },
            Degradations {
                noise: (0.03, 0.01),
                ..ok.clone()
            },
            Degradations {
                jpeg: (0, 90),
                ..ok.clone()
            },
            Degradations {
                jpeg: (90, 101),
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
