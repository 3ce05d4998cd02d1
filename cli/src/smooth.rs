//! Smooth training patches: the flat walls, skies, screens and bodies of cars that real photos
//! are full of and the training photos (grainy, textured BSDS500, Urban100 and McMaster scenes)
//! barely hold. A network that never sees a textureless patch has no reason to leave one alone,
//! and ours did not: it took 15 to 80 levels off a flat grey and painted dark blotches on a smooth
//! wall (WEIGHTS.md, "Dark blotches on smooth areas"). A smooth patch replaces a clean one before
//! the rain is added, so the network learns that rain on a flat area leaves a flat area.

use rand::rngs::StdRng;
use rand::Rng;

use crate::rendered::gaussian_blur;

/// A smooth version of a clean planar RGB patch `[3, P, P]` in [0, 1]: half the time the
/// patch blurred flat (a Gaussian of sigma 4 to 16 pixels: its colours, none of its texture),
/// half the time its mean colour as a plain field with a gentle linear gradient (up to 0.08 of
/// the range across the patch) and a faint grain (sigma up to 1.5 levels of 255).
pub fn smooth_patch(clean: &[f32], p: usize, rng: &mut StdRng) -> Vec<f32> {
    let n = p * p;
    if rng.random_bool(0.5) {
        let sigma = rng.random_range(4.0f32..16.0);
        return (0..3)
            .flat_map(|c| gaussian_blur(&clean[c * n..(c + 1) * n], p, p, sigma))
            .collect();
    }
    let angle = rng.random_range(0.0..std::f32::consts::TAU);
    let slope = rng.random_range(0.0f32..0.08) / p as f32;
    let (gx, gy) = (angle.cos() * slope, angle.sin() * slope);
    let grain = rng.random_range(0.0f32..1.5) / 255.0;
    let mut out = vec![0f32; 3 * n];
    for c in 0..3 {
        let mean = clean[c * n..(c + 1) * n].iter().sum::<f32>() / n as f32;
        for y in 0..p {
            for x in 0..p {
                let ramp = gx * (x as f32 - p as f32 / 2.0) + gy * (y as f32 - p as f32 / 2.0);
                let noise = grain * (rng.random::<f32>() - 0.5) * 12f32.sqrt();
                out[c * n + y * p + x] = (mean + ramp + noise).clamp(0.0, 1.0);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::rng_for;

    #[test]
    fn smooth_patches_keep_the_colour_and_lose_the_texture() {
        // A checkerboard of two colours: every smooth version has about its mean colour and
        // far less local contrast (neighbour differences) than the checkerboard's.
        let p = 48;
        let n = p * p;
        let mut clean = vec![0f32; 3 * n];
        for c in 0..3 {
            for i in 0..n {
                let on = ((i % p) / 4 + (i / p) / 4) % 2 == 0;
                clean[c * n + i] = if on { 0.2 + 0.1 * c as f32 } else { 0.6 };
            }
        }
        let contrast =
            |img: &[f32]| (1..n).map(|i| (img[i] - img[i - 1]).abs()).sum::<f32>() / n as f32;
        for seed in 0..8 {
            let smooth = smooth_patch(&clean, p, &mut rng_for(seed, 0));
            assert!(smooth.iter().all(|v| (0.0..=1.0).contains(v)));
            for c in 0..3 {
                let mean = |img: &[f32]| img[c * n..(c + 1) * n].iter().sum::<f32>() / n as f32;
                assert!((mean(&smooth) - mean(&clean)).abs() < 0.03, "seed {seed}");
            }
            assert!(contrast(&smooth) < contrast(&clean) / 10.0, "seed {seed}");
        }
    }
}
