//! The paper's metrics, computed as its MATLAB scripts do: Y channel of `rgb2ycbcr` on images
//! in [0, 1] (BT.601), PSNR with peak 1, and Wang et al.'s `ssim.m` on `Y * 255` (11x11
//! Gaussian window, sigma 1.5, 'valid' filtering, after its `f = round(min(H, W) / 256)`
//! box-filter downsampling).

/// Luminance of an 8-bit RGB image (interleaved), as MATLAB's `rgb2ycbcr` on doubles in [0, 1].
pub fn luminance(rgb: &[u8]) -> Vec<f64> {
    rgb.chunks_exact(3)
        .map(|p| {
            let [r, g, b] = [p[0], p[1], p[2]].map(|v| v as f64 / 255.0);
            (65.481 * r + 128.553 * g + 24.966 * b + 16.0) / 255.0
        })
        .collect()
}

/// PSNR in dB with peak 1.
pub fn psnr(a: &[f64], b: &[f64]) -> f64 {
    let mse = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() / a.len() as f64;
    10.0 * (1.0 / mse).log10()
}

/// MATLAB `round`: half away from zero.
fn matlab_round(v: f64) -> usize {
    v.round() as usize
}

/// `imfilter(img, ones(f)/f^2, 'symmetric', 'same')` followed by `img(1:f:end, 1:f:end)`.
fn downsample(img: &[f64], w: usize, h: usize, f: usize) -> (Vec<f64>, usize, usize) {
    // MATLAB's kernel centre for an even size f is f/2 (1-based), so offsets run 1 - c ..= f - c.
    let c = f.div_ceil(2).max(1) as isize; // floor((f + 1) / 2)
    let mirror = |i: isize, n: usize| -> usize {
        let n = n as isize;
        let mut i = i;
        loop {
            if i < 0 {
                i = -i - 1;
            } else if i >= n {
                i = 2 * n - i - 1;
            } else {
                return i as usize;
            }
        }
    };
    let (ow, oh) = (w.div_ceil(f), h.div_ceil(f));
    let mut out = Vec::with_capacity(ow * oh);
    for oy in 0..oh {
        for ox in 0..ow {
            let (y, x) = ((oy * f) as isize, (ox * f) as isize);
            let mut sum = 0.0;
            for dy in 1..=f as isize {
                for dx in 1..=f as isize {
                    sum += img[mirror(y + dy - c, h) * w + mirror(x + dx - c, w)];
                }
            }
            out.push(sum / (f * f) as f64);
        }
    }
    (out, ow, oh)
}

/// The normalised 11-tap Gaussian (sigma 1.5) of `ssim.m` and of the authors' `pytorch_ssim`.
pub fn gaussian_window() -> [f64; 11] {
    let taps: [f64; 11] = std::array::from_fn(|i| {
        let x = i as f64 - 5.0;
        (-(x * x) / (2.0 * 1.5 * 1.5)).exp()
    });
    let total: f64 = taps.iter().sum();
    taps.map(|t| t / total)
}

/// Separable 'valid' correlation with the normalised 11-tap Gaussian (sigma 1.5) on both axes.
fn gaussian_valid(img: &[f64], w: usize, h: usize) -> Vec<f64> {
    const R: usize = 5;
    let taps = gaussian_window();
    let (ow, oh) = (w - 2 * R, h - 2 * R);
    let mut rows = vec![0.0; ow * h];
    for y in 0..h {
        for x in 0..ow {
            rows[y * ow + x] = taps
                .iter()
                .enumerate()
                .map(|(k, t)| t * img[y * w + x + k])
                .sum();
        }
    }
    let mut out = vec![0.0; ow * oh];
    for y in 0..oh {
        for x in 0..ow {
            out[y * ow + x] = taps
                .iter()
                .enumerate()
                .map(|(k, t)| t * rows[(y + k) * ow + x])
                .sum();
        }
    }
    out
}

/// Mean SSIM of two luminance images in [0, 1], as `ssim.m` computes it on `Y * 255`; like
/// `ssim.m`, minus infinity for an image under 11 pixels a side (too small for its window).
pub fn ssim(a: &[f64], b: &[f64], width: usize, height: usize) -> f64 {
    if width < 11 || height < 11 {
        return f64::NEG_INFINITY;
    }
    let scale = |v: &[f64]| v.iter().map(|x| x * 255.0).collect::<Vec<_>>();
    let (mut a, mut b, mut w, mut h) = (scale(a), scale(b), width, height);
    let f = matlab_round(width.min(height) as f64 / 256.0).max(1);
    if f > 1 {
        (a, w, h) = downsample(&a, w, h, f);
        (b, _, _) = downsample(&b, width, height, f);
    }
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let product = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).collect::<Vec<_>>();
    let mu1 = gaussian_valid(&a, w, h);
    let mu2 = gaussian_valid(&b, w, h);
    let s11 = gaussian_valid(&product(&a, &a), w, h);
    let s22 = gaussian_valid(&product(&b, &b), w, h);
    let s12 = gaussian_valid(&product(&a, &b), w, h);
    let n = mu1.len();
    (0..n)
        .map(|i| {
            let (m1, m2) = (mu1[i], mu2[i]);
            let (v1, v2, cov) = (s11[i] - m1 * m1, s22[i] - m2 * m2, s12[i] - m1 * m2);
            ((2.0 * m1 * m2 + c1) * (2.0 * cov + c2)) / ((m1 * m1 + m2 * m2 + c1) * (v1 + v2 + c2))
        })
        .sum::<f64>()
        / n as f64
}

/// Score a network output against its 8-bit ground truth as the paper does: truncate the
/// output to 8 bits, then Y-channel PSNR and SSIM. `output` is planar `[3, H, W]`, `clean`
/// interleaved RGB.
pub fn score(output: &[f32], clean: &[u8], width: usize, height: usize) -> (f64, f64) {
    let n = width * height;
    let derained: Vec<u8> = (0..n)
        .flat_map(|i| [0, 1, 2].map(|c| model::image::to_u8(output[c * n + i])))
        .collect();
    let (y_out, y_gt) = (luminance(&derained), luminance(clean));
    (psnr(&y_out, &y_gt), ssim(&y_out, &y_gt, width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luminance_is_bt601_studio_range() {
        assert!((luminance(&[0, 0, 0])[0] - 16.0 / 255.0).abs() < 1e-12);
        assert!((luminance(&[255, 255, 255])[0] - 235.0 / 255.0).abs() < 1e-12);
    }

    #[test]
    fn identical_images_have_ssim_one_and_infinite_psnr() {
        let img: Vec<f64> = (0..40 * 30)
            .map(|i| ((i * 7919) % 256) as f64 / 255.0)
            .collect();
        assert!((ssim(&img, &img, 40, 30) - 1.0).abs() < 1e-12);
        // Under 11 pixels a side ssim.m gives -Inf, and so do we (no panic).
        assert_eq!(ssim(&img[..100], &img[..100], 10, 10), f64::NEG_INFINITY);
        assert!(psnr(&img, &img).is_infinite());
    }

    /// A hand-computed case: a constant offset changes only the luminance term.
    /// With mu2 = mu1 + d and equal variances, SSIM = (2 mu1 mu2 + C1) / (mu1^2 + mu2^2 + C1).
    #[test]
    fn ssim_of_a_constant_shift_matches_the_closed_form() {
        let (w, h) = (31, 23);
        let a = vec![0.4; w * h];
        let b = vec![0.5; w * h];
        let (m1, m2, c1) = (0.4 * 255.0, 0.5 * 255.0, (0.01f64 * 255.0).powi(2));
        let expected = (2.0 * m1 * m2 + c1) / (m1 * m1 + m2 * m2 + c1);
        assert!((ssim(&a, &b, w, h) - expected).abs() < 1e-12);
        // PSNR of a 0.1 offset: 20 dB.
        assert!((psnr(&a, &b) - 20.0).abs() < 1e-9);
    }

    #[test]
    fn downsampling_averages_even_boxes_with_matlabs_centre() {
        // 1-D ramp along x; with f = 2 the box covers x-0 and x+1 (MATLAB centre floor((f+1)/2) = 1).
        let (w, h) = (6, 2);
        let img: Vec<f64> = (0..w * h).map(|i| (i % w) as f64).collect();
        let (out, ow, oh) = downsample(&img, w, h, 2);
        assert_eq!((ow, oh), (3, 1));
        assert_eq!(out, vec![0.5, 2.5, 4.5]);
    }
}
