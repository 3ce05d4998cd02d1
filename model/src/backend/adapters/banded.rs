//! A convolution's weight gradient as a batch of small matrix products, one per image of the
//! batch and band of output rows, summed: the reduction over `N·H·W` pixels is split into
//! parts of about [`PIXELS_PER_PART`] pixels, so a GPU runs `N·H/rows` products side by side
//! instead of one long one on the few blocks that a `C_out x C_in·K_h·K_w` output covers.
//!
//! `dW[o, i, a, b] = Σ_{n, y, x} dY[n, o, y, x] · X_pad[n, i, y + a, x + b]` (stride and
//! dilation 1): the columns `X_pad[n, i, y + a, x + b]` are the `K_h·K_w` shifted windows of the
//! zero-padded input (im2col), cut into bands of rows; each band is one matrix product.
//!
//! Contract: any backend (burn's tensor operations only); stride 1, dilation 1, one group
//! ([`split_or_burn`] hands other convolutions to burn); the bands' products are summed by
//! burn's `sum_dim`, so the order of the sum is the backend's.

// Without a GPU backend only the tests run the banded gradient.
#![cfg_attr(not(any(feature = "wgpu", feature = "cuda")), allow(dead_code))]

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::Tensor;

use crate::backend::{is_plain, primitive, tensor};

/// About how many pixels one matrix product sums over (a whole number of output rows).
pub(crate) const PIXELS_PER_PART: usize = 1024;

/// Which weight gradient the GPU backends compute, for the whole process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightGradient {
    /// The banded one ([`split`]), where it applies.
    #[default]
    Banded,
    /// burn's own (one GEMM over all the pixels): the A/B comparison on a GPU.
    Burn,
}

impl std::str::FromStr for WeightGradient {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "banded" => Ok(Self::Banded),
            "burn" => Ok(Self::Burn),
            _ => Err(format!(
                "unknown weight gradient `{name}` (choose banded or burn)"
            )),
        }
    }
}

/// Whether [`use_weight_gradient`] chose burn's.
static BURNS: AtomicBool = AtomicBool::new(false);

/// Compute every later weight gradient on the GPU backends with `choice` (the CLI's
/// `--weight-gradient`; [`WeightGradient::Banded`] until called). The CPU keeps its own kernel.
pub fn use_weight_gradient(choice: WeightGradient) {
    BURNS.store(choice == WeightGradient::Burn, Ordering::Relaxed);
}

/// The choice [`use_weight_gradient`] made last.
pub fn weight_gradient() -> WeightGradient {
    if BURNS.load(Ordering::Relaxed) {
        WeightGradient::Burn
    } else {
        WeightGradient::Banded
    }
}

/// [`split`] where it applies (stride 1, dilation 1, one group) unless burn's was chosen
/// ([`use_weight_gradient`]), else burn's weight gradient.
///
/// # Shapes
/// - `x`: `[N, C_in, H, W]`, `weight`: `[C_out, C_in, K_h, K_w]`,
///   `output_grad`: `[N, C_out, H_out, W_out]` → `[C_out, C_in, K_h, K_w]`
pub(crate) fn split_or_burn<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: ConvOptions<2>,
) -> FloatTensor<B> {
    if !is_plain(&options) || weight_gradient() == WeightGradient::Burn {
        return B::conv2d_weight_backward(x, weight, output_grad, options);
    }
    let [_, _, kernel_h, kernel_w] = burn::tensor::TensorMetadata::shape(&weight).dims();
    primitive(split(
        tensor::<B, 4>(x),
        tensor(output_grad),
        [kernel_h, kernel_w],
        options.padding,
    ))
}

/// The weight gradient of a stride-1 convolution with `padding`, split over bands of rows.
///
/// # Shapes
/// - `x`: `[N, C_in, H, W]`, `output_grad`: `[N, C_out, H_out, W_out]` with
///   `H_out = H + 2·padding[0] − K_h + 1` (likewise W)
/// - output: `[C_out, C_in, K_h, K_w]`
pub(crate) fn split<B: Backend>(
    x: Tensor<B, 4>,
    output_grad: Tensor<B, 4>,
    kernel: [usize; 2],
    padding: [usize; 2],
) -> Tensor<B, 4> {
    let [batch, channels_in, height, width] = x.dims();
    let [_, channels_out, out_h, out_w] = output_grad.dims();
    let [kernel_h, kernel_w] = kernel;
    let device = x.device();

    let rows = (PIXELS_PER_PART / out_w).clamp(1, out_h);
    let bands = out_h.div_ceil(rows);
    let padded_h = bands * rows;
    let part = rows * out_w;
    let parts = batch * bands;

    // The input, zero-padded by the convolution's padding and by the rows the last band lacks.
    let x_padded = Tensor::zeros(
        [
            batch,
            channels_in,
            padded_h + kernel_h - 1,
            out_w + kernel_w - 1,
        ],
        &device,
    )
    .slice_assign(
        [
            0..batch,
            0..channels_in,
            padding[0]..padding[0] + height,
            padding[1]..padding[1] + width,
        ],
        x,
    );
    // im2col: `[N, C_in, K_h·K_w, H_pad, W_out]`, in the weight's `[C_in, K_h, K_w]` order,
    // then one `[C_in·K_h·K_w, rows·W_out]` matrix per image and band.
    let windows = (0..kernel_h)
        .flat_map(|a| (0..kernel_w).map(move |b| (a, b)))
        .map(|(a, b)| {
            x_padded
                .clone()
                .slice([0..batch, 0..channels_in, a..a + padded_h, b..b + out_w])
        })
        .collect::<Vec<_>>();
    let columns = Tensor::<B, 4>::stack::<5>(windows, 2)
        .reshape([batch, channels_in * kernel_h * kernel_w, bands, part])
        .swap_dims(1, 2)
        .reshape([parts, channels_in * kernel_h * kernel_w, part]);

    let output_grad = if padded_h > out_h {
        Tensor::zeros([batch, channels_out, padded_h, out_w], &device)
            .slice_assign([0..batch, 0..channels_out, 0..out_h, 0..out_w], output_grad)
    } else {
        output_grad
    };
    let output_grad = output_grad
        .reshape([batch, channels_out, bands, part])
        .swap_dims(1, 2)
        .reshape([parts, channels_out, part]);

    output_grad
        .matmul(columns.swap_dims(1, 2))
        .sum_dim(0)
        .reshape([channels_out, channels_in, kernel_h, kernel_w])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the CLI takes parse to their choices, and anything else is refused with the
    /// names to choose from.
    #[test]
    fn the_weight_gradient_is_chosen_by_name() {
        assert_eq!("banded".parse(), Ok(WeightGradient::Banded));
        assert_eq!("burn".parse(), Ok(WeightGradient::Burn));
        let refused = "fast".parse::<WeightGradient>().unwrap_err();
        assert!(refused.contains("banded or burn"), "{refused}");
    }
    use burn::tensor::ops::ModuleOps;
    use burn::tensor::TensorPrimitive;
    use burn::tensor::{Distribution, TensorData, Tolerance};
    use burn_flex::Flex;

    /// The weight gradient by its definition, summed in f64 loop by loop.
    fn by_definition(
        x: &Tensor<Flex, 4>,
        grad: &Tensor<Flex, 4>,
        kernel: [usize; 2],
        padding: [usize; 2],
    ) -> Tensor<Flex, 4> {
        let [n, ci, h, w] = x.dims();
        let [_, co, oh, ow] = grad.dims();
        let xs = x.to_data().to_vec::<f32>().unwrap();
        let gs = grad.to_data().to_vec::<f32>().unwrap();
        let mut out = vec![0f32; co * ci * kernel[0] * kernel[1]];
        for o in 0..co {
            for i in 0..ci {
                for a in 0..kernel[0] {
                    for b in 0..kernel[1] {
                        let mut sum = 0f64;
                        for s in 0..n {
                            for y in 0..oh {
                                for z in 0..ow {
                                    let (yy, zz) = (y + a, z + b);
                                    if yy < padding[0] || zz < padding[1] {
                                        continue;
                                    }
                                    let (yy, zz) = (yy - padding[0], zz - padding[1]);
                                    if yy >= h || zz >= w {
                                        continue;
                                    }
                                    sum += gs[((s * co + o) * oh + y) * ow + z] as f64
                                        * xs[((s * ci + i) * h + yy) * w + zz] as f64;
                                }
                            }
                        }
                        out[((o * ci + i) * kernel[0] + a) * kernel[1] + b] = sum as f32;
                    }
                }
            }
        }
        Tensor::from_data(
            TensorData::new(out, [co, ci, kernel[0], kernel[1]]),
            &x.device(),
        )
    }

    /// The split gradient equals the definition (f64 loops) and burn's own weight gradient,
    /// for shapes whose rows fill one band, several bands, and a last band short of rows
    /// (the zero rows added must not count), with and without padding.
    #[test]
    fn the_split_weight_gradient_is_the_weight_gradient() {
        let device = Default::default();
        for (n, ci, co, h, w, kernel, padding) in [
            (2, 3, 4, 9, 7, [3, 3], [1, 1]),
            (3, 5, 2, 70, 40, [3, 3], [1, 1]),
            (1, 4, 3, 33, 300, [3, 3], [1, 1]),
            (2, 2, 3, 12, 11, [3, 2], [0, 0]),
        ] {
            let x = Tensor::<Flex, 4>::random([n, ci, h, w], Distribution::Normal(0., 1.), &device);
            let oh = h + 2 * padding[0] - kernel[0] + 1;
            let ow = w + 2 * padding[1] - kernel[1] + 1;
            let grad =
                Tensor::<Flex, 4>::random([n, co, oh, ow], Distribution::Normal(0., 1.), &device);
            let ours = split(x.clone(), grad.clone(), kernel, padding);
            let reference = by_definition(&x, &grad, kernel, padding);
            ours.to_data()
                .assert_approx_eq::<f32>(&reference.to_data(), Tolerance::rel_abs(1e-4, 1e-3));
            let weight = Tensor::<Flex, 4>::zeros([co, ci, kernel[0], kernel[1]], &device);
            let burns =
                Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(<Flex as ModuleOps<
                    Flex,
                >>::conv2d_weight_backward(
                    x.into_primitive().tensor(),
                    weight.into_primitive().tensor(),
                    grad.into_primitive().tensor(),
                    ConvOptions::new([1, 1], padding, [1, 1], 1),
                )));
            ours.to_data()
                .assert_approx_eq::<f32>(&burns.to_data(), Tolerance::rel_abs(1e-4, 1e-3));
        }
    }
}
