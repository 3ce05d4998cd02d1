//! Training losses: the paper's SSIM (as the authors' `pytorch_ssim`: 11x11 Gaussian window,
//! sigma 1.5, applied per channel with zero padding 5, C1 = 0.01², C2 = 0.03², mean of the
//! map), SSIM with L1, MSE, the recursive loss over stages and the rain-supervised loss.

use burn::tensor::backend::Backend;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// The 11-tap Gaussian (sigma 1.5), normalised: the metric's window in f32.
pub fn gaussian_taps() -> [f32; 11] {
    crate::eval::gaussian_window().map(|t| t as f32)
}

/// Gaussian blur of each plane with zero padding: the local means SSIM is built from. The
/// window is the outer product of the 11 taps, so the blur runs as a column of 11 taps, then a
/// row of 11 (22 multiply-adds a pixel where the 11x11 window takes 121; with zero padding the
/// two are the same sum, up to f32 rounding), each plane as an image of one channel.
///
/// # Shapes
/// - `x`: `[N, C, H, W]` → `[N, C, H, W]`
fn blur<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let taps = gaussian_taps().to_vec();
    let device = x.device();
    let column = Tensor::from_data(TensorData::new(taps.clone(), [1, 1, 11, 1]), &device);
    let row = Tensor::from_data(TensorData::new(taps, [1, 1, 1, 11]), &device);
    let planes = x.reshape([n * c, 1, h, w]);
    let down = conv2d(
        planes,
        column,
        None,
        ConvOptions::new([1, 1], [5, 0], [1, 1], 1),
    );
    conv2d(down, row, None, ConvOptions::new([1, 1], [0, 5], [1, 1], 1)).reshape([n, c, h, w])
}

/// Mean SSIM of two image batches in [0, 1].
///
/// # Shapes
/// - `x`, `y`: `[N, C, H, W]`
/// - returns `[1]`
pub fn ssim<B: Backend>(x: Tensor<B, 4>, y: Tensor<B, 4>) -> Tensor<B, 1> {
    let (c1, c2) = (0.01f32 * 0.01, 0.03f32 * 0.03);
    let mu_x = blur(x.clone());
    let mu_y = blur(y.clone());
    let mu_xx = mu_x.clone() * mu_x.clone();
    let mu_yy = mu_y.clone() * mu_y.clone();
    let mu_xy = mu_x * mu_y;
    let var_x = blur(x.clone() * x.clone()) - mu_xx.clone();
    let var_y = blur(y.clone() * y.clone()) - mu_yy.clone();
    let cov = blur(x * y) - mu_xy.clone();
    let map = (mu_xy * 2.0 + c1) * (cov * 2.0 + c2) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2));
    map.mean()
}

/// 0.84 × (−SSIM) + 0.16 × mean absolute error of two image batches in [0, 1].
///
/// # Shapes
/// - `x`, `y`: `[N, C, H, W]`
/// - returns `[1]`
pub fn ssim_l1<B: Backend>(x: Tensor<B, 4>, y: Tensor<B, 4>) -> Tensor<B, 1> {
    let l1 = (x.clone() - y.clone()).abs().mean();
    -ssim(x, y) * 0.84 + l1 * 0.16
}

/// Which loss to train with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Negative SSIM of the final stage's background (the paper's default).
    Ssim,
    /// 0.84 × (−SSIM) + 0.16 × mean absolute error of the final stage's background (the
    /// mix of Zhao et al., "Loss Functions for Image Restoration with Neural Networks", 2017):
    /// SSIM for structure, L1 for the flat areas' exact level, which SSIM hardly weighs.
    SsimL1,
    /// Mean squared error of the final stage's background.
    Mse,
    /// Negative SSIM summed over stages, 0.5 for t < T and 1.5 for t = T.
    Recursive,
    /// 0.45 × (−SSIM of the rain layer against y − x_gt) + 0.55 × (−SSIM of the background).
    RainSupervised,
}

/// The loss of one batch.
///
/// # Shapes
/// - `rainy`, `clean`: `[N, 3, H, W]`; `stages`: the network's output with every stage kept
/// - returns `[1]`
pub fn loss<B: Backend>(
    kind: LossKind,
    rainy: Tensor<B, 4>,
    clean: Tensor<B, 4>,
    stages: model::Stages<B>,
) -> Tensor<B, 1> {
    match kind {
        LossKind::Ssim => -ssim(stages.background, clean),
        LossKind::SsimL1 => ssim_l1(stages.background, clean),
        LossKind::Mse => (stages.background - clean).powf_scalar(2.0).mean(),
        LossKind::Recursive => {
            let last = stages.background_stages.len().saturating_sub(1);
            stages
                .background_stages
                .into_iter()
                .enumerate()
                .map(|(t, x)| -ssim(x, clean.clone()) * if t == last { 1.5 } else { 0.5 })
                .reduce(|a, b| a + b)
                .expect("at least one stage")
        }
        LossKind::RainSupervised => {
            let background = -ssim(stages.background, clean.clone()) * 0.55;
            match stages.rain {
                Some(rain) => background - ssim(rain, rainy - clean) * 0.45,
                None => background,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_flex::Flex;

    /// SSIM with zero padding computed naively in f64 with direct 2-D sums: an independent
    /// implementation of the same definition.
    fn naive_ssim(x: &[f64], y: &[f64], c: usize, h: usize, w: usize) -> f64 {
        let taps: Vec<f64> = gaussian_taps().iter().map(|&t| t as f64).collect();
        let at = |img: &[f64], ch: usize, yy: isize, xx: isize| -> f64 {
            if yy < 0 || xx < 0 || yy >= h as isize || xx >= w as isize {
                0.0
            } else {
                img[ch * h * w + yy as usize * w + xx as usize]
            }
        };
        let (c1, c2) = (1e-4, 9e-4);
        let mut total = 0.0;
        for ch in 0..c {
            for i in 0..h as isize {
                for j in 0..w as isize {
                    let (mut mx, mut my, mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
                    for a in 0..11 {
                        for b in 0..11 {
                            let g = taps[a] * taps[b];
                            let (p, q) = (
                                at(x, ch, i + a as isize - 5, j + b as isize - 5),
                                at(y, ch, i + a as isize - 5, j + b as isize - 5),
                            );
                            mx += g * p;
                            my += g * q;
                            sxx += g * p * p;
                            syy += g * q * q;
                            sxy += g * p * q;
                        }
                    }
                    let (vx, vy, cov) = (sxx - mx * mx, syy - my * my, sxy - mx * my);
                    total += (2.0 * mx * my + c1) * (2.0 * cov + c2)
                        / ((mx * mx + my * my + c1) * (vx + vy + c2));
                }
            }
        }
        total / (c * h * w) as f64
    }

    /// The 11x11 window as one depthwise convolution (what `blur` computed before it ran
    /// separably): the reference for its values and gradients.
    fn blur_2d<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
        let channels = x.dims()[1];
        let taps = gaussian_taps();
        let mut window = Vec::with_capacity(channels * 121);
        for _ in 0..channels {
            for a in taps {
                window.extend(taps.map(|b| a * b));
            }
        }
        let weight = Tensor::from_data(TensorData::new(window, [channels, 1, 11, 11]), &x.device());
        conv2d(
            x,
            weight,
            None,
            ConvOptions::new([1, 1], [5, 5], [1, 1], channels),
        )
    }

    /// The separable blur against the 11x11 window, values and the gradient of a weighted sum
    /// (through burn's autodiff), on planes smaller and larger than the window.
    #[test]
    fn the_separable_blur_is_the_windowed_blur() {
        type B = burn::backend::Autodiff<Flex>;
        let device = Default::default();
        for [n, c, h, w] in [[2, 3, 9, 14], [1, 2, 23, 17]] {
            let values: Vec<f32> = (0..n * c * h * w)
                .map(|i| ((i * 7919) % 101) as f32 / 100.0)
                .collect();
            let weights: Vec<f32> = (0..n * c * h * w)
                .map(|i| ((i * 104729) % 53) as f32 / 53.0 - 0.5)
                .collect();
            let weights =
                Tensor::<B, 4>::from_data(TensorData::new(weights, [n, c, h, w]), &device);
            let run = |f: fn(Tensor<B, 4>) -> Tensor<B, 4>| {
                let x = Tensor::<B, 4>::from_data(
                    TensorData::new(values.clone(), [n, c, h, w]),
                    &device,
                )
                .require_grad();
                let y = f(x.clone());
                let grads = (y.clone() * weights.clone()).sum().backward();
                let grad = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
                (y.into_data().to_vec::<f32>().unwrap(), grad)
            };
            let (ours, ours_grad) = run(blur);
            let (reference, reference_grad) = run(blur_2d);
            for (a, b) in ours
                .iter()
                .zip(&reference)
                .chain(ours_grad.iter().zip(&reference_grad))
            {
                assert!((a - b).abs() < 1e-6, "{:?}: {a} vs {b}", [n, c, h, w]);
            }
        }
    }

    #[test]
    fn ssim_matches_a_naive_reference() {
        let (c, h, w) = (3, 17, 23);
        let x: Vec<f32> = (0..c * h * w)
            .map(|i| ((i * 7919) % 101) as f32 / 100.0)
            .collect();
        let y: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, v)| (v * 0.8 + ((i % 13) as f32) / 40.0).min(1.0))
            .collect();
        let want = naive_ssim(
            &x.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            &y.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            c,
            h,
            w,
        );
        let device = Default::default();
        let tx = Tensor::<Flex, 4>::from_data(TensorData::new(x.clone(), [1, c, h, w]), &device);
        let ty = Tensor::<Flex, 4>::from_data(TensorData::new(y.clone(), [1, c, h, w]), &device);
        let got = ssim(tx.clone(), ty.clone()).into_scalar() as f64;
        assert!((got - want).abs() < 1e-5, "ours {got}, naive {want}");
        let same = ssim(tx.clone(), tx.clone()).into_scalar();
        assert!((same - 1.0).abs() < 1e-5, "{same}");
        // SSIM with L1: the same naive SSIM and a plain mean of |x - y|.
        let l1 = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).abs() as f64)
            .sum::<f64>()
            / x.len() as f64;
        let mixed = ssim_l1(tx, ty).into_scalar() as f64;
        assert!(
            (mixed - (-0.84 * want + 0.16 * l1)).abs() < 1e-5,
            "ours {mixed}"
        );
    }
}
