//! A convolution's three gradients in one call, from its output gradient through the ReLUs
//! that followed it ([`Through`]: the mask not yet applied), as a training step's backward
//! pass asks for them.
//!
//! For a convolution whose padding keeps the size (every BRN convolution) the output gradient
//! is read once: one pass masks it, pads it as the input gradient's convolution reads it (f32,
//! or bfloat16 channel pairs for the bfloat16 products of mixed precision) and sums the bias
//! gradient ([`super::layout::pad_through`], [`super::bf16::pad_pairs_through`]); the weight
//! gradient then reads its bands from that padded copy (the padding's zeros fall where its wide
//! layout wants zeros). Gone: the mask pass, the bias pass, and the weight gradient's own
//! reading (and rounding) of the floats. Elsewhere (other paddings, no input gradient asked,
//! products that differ between the two gradients): the mask
//! ([`super::elementwise::relu_mask`]), then [`super::conv_gradient::input_gradient`],
//! [`super::conv_gradient::weight_gradient`] and [`bias_gradient`].
//!
//! Contract: as [`super::conv_gradient`]; the same values as the mask followed by the three
//! gradients (the bias gradient summed in another fixed order, each plane row by row).

use std::borrow::Cow;

use super::conv_gradient::{bias_gradient, f32_weight_gradient, input_gradient_on};
use super::conv_gradient::{transposed, weight_gradient_on, OutputGrad};
use super::elementwise::Through;
use super::layout::Input;
use super::layout::{pad_through, Shape};
use super::products::{Precision, Products};

/// Which of the three gradients the caller needs (a convolution whose input is the network's
/// input needs no input gradient; one without bias no bias gradient).
#[derive(Clone, Copy, Debug)]
pub struct Wanted {
    /// The input's.
    pub input: bool,
    /// The kernel's.
    pub weight: bool,
    /// The bias's.
    pub bias: bool,
}

/// The gradients asked for ([`Wanted`]), `None` for the others: in the kernels as `Vec<f32>`
/// (`model` holds tensors in it).
#[derive(Debug)]
pub struct Gradients<T = Vec<f32>> {
    /// `[N, C_in, H, W]`.
    pub input: Option<T>,
    /// `[C_out, C_in, K_h, K_w]`.
    pub weight: Option<T>,
    /// `[C_out]`.
    pub bias: Option<T>,
}

/// The gradients of the input, the kernel and the bias of `y = conv(x, weight) + bias` from
/// `output_grad`, the gradient of `y` through the ReLUs after it.
///
/// # Shapes
/// - `x`: `[N, C_in, H, W]`, `weight`: `[C_out, C_in, K_h, K_w]`, `output_grad`: `[N, C_out,
///   H_out, W_out]`
/// - [`Gradients`]
///
/// # Panics
/// If `output_grad` is not `[N, C_out, H_out, W_out]` (a caller's bug).
pub fn backward(
    x: &[f32],
    weight: &[f32],
    output_grad: Through,
    shape: Shape,
    precision: Precision,
    wanted: Wanted,
) -> Gradients {
    backward_on(
        Products::best(precision),
        x,
        weight,
        output_grad,
        shape,
        wanted,
    )
}

/// [`backward`] by the given products.
fn backward_on(
    products: Products,
    x: &[f32],
    weight: &[f32],
    output_grad: Through,
    shape: Shape,
    wanted: Wanted,
) -> Gradients {
    let [out_h, out_w] = shape.out_size();
    let out_plane = out_h * out_w;
    assert_eq!(
        output_grad.len(),
        shape.batch * shape.channels_out * out_plane,
        "output gradient of another shape"
    );
    if let Some(gradients) = in_one_pass(products, x, weight, output_grad, shape, wanted) {
        return gradients;
    }
    let masked = match output_grad.unmasked() {
        Some(grad) => Cow::Borrowed(grad),
        None => Cow::Owned(output_grad.masked()),
    };
    let (batch, c_out) = (shape.batch, shape.channels_out);
    let input = Input::Floats(&[&masked]);
    Gradients {
        input: wanted
            .input
            .then(|| input_gradient_on(products, input, weight, shape)),
        weight: wanted
            .weight
            .then(|| weight_gradient_on(products, x, &masked, shape)),
        bias: wanted
            .bias
            .then(|| bias_gradient(&masked, batch, c_out, out_plane)),
    }
}

/// [`backward_on`] with the output gradient read once (see the module's documentation), where
/// the padding keeps the size, the input gradient is wanted (its pass sums the bias gradient
/// too) and both gradients read the same kind of operand (f32, or bfloat16 pairs); else
/// `None`.
fn in_one_pass(
    products: Products,
    x: &[f32],
    weight: &[f32],
    output_grad: Through,
    shape: Shape,
    wanted: Wanted,
) -> Option<Gradients> {
    let keeps_size = (0..2).all(|k| 2 * shape.padding[k] + 1 == shape.kernel[k]);
    if !wanted.input || !keeps_size {
        return None;
    }
    let transposed = transposed(shape);
    #[cfg(target_arch = "x86_64")]
    {
        use super::conv_gradient::{bf16_weight_gradient, PairProducts};
        let pairs = match products.for_shape(transposed) {
            Products::Avx512Bf16 => Some(super::avx512_bf16::pairs(shape.channels_out)),
            #[cfg(target_os = "linux")]
            Products::Amx => Some(super::amx::pairs(shape.channels_out)),
            _ => None,
        };
        let weight_products = PairProducts::of(products, shape);
        if let Some(pairs) = pairs {
            // The input gradient reads bfloat16 pairs: so must the weight gradient.
            let weight_products = match wanted.weight {
                true => Some(weight_products?),
                false => None,
            };
            let (padded, bias) = super::bf16::pad_pairs_through(output_grad, transposed, pairs);
            let words = OutputGrad::Pairs {
                words: &padded,
                pairs,
            };
            return Some(Gradients {
                weight: weight_products.map(|p| bf16_weight_gradient(p, x, words, shape)),
                input: Some(input_gradient_on(
                    products,
                    Input::Pairs(&padded),
                    weight,
                    shape,
                )),
                bias: wanted.bias.then_some(bias),
            });
        }
        // The input gradient reads f32: so must the weight gradient.
        if wanted.weight && weight_products.is_some() {
            return None;
        }
    }
    let (padded, bias) = pad_through(output_grad, transposed);
    let output = OutputGrad::Padded(&padded);
    Some(Gradients {
        weight: wanted.weight.then(|| f32_weight_gradient(x, output, shape)),
        input: Some(input_gradient_on(
            products,
            Input::Padded(&padded),
            weight,
            shape,
        )),
        bias: wanted.bias.then_some(bias),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elementwise::relu_mask;
    use crate::values;

    /// Every kind of products this CPU runs, f32 and bfloat16 (the products module's tests
    /// check that none is missed).
    fn every_kind() -> Vec<Products> {
        let mut kinds = Products::all();
        kinds.extend(Products::all_mixed());
        kinds
    }

    /// Every kind takes the one pass for the model's 32 → 32 convolution (so that the test
    /// below checks it, not the step-by-step path twice), and none for a padding that does not
    /// keep the size or without the input gradient.
    #[test]
    fn the_one_pass_is_taken_where_it_applies() {
        let shape = Shape::of([1, 32, 32], [8, 8], [3, 3], [1, 1]);
        let (x, weight, grad) = (values(2048, 1), values(9216, 2), values(2048, 3));
        let all = Wanted {
            input: true,
            weight: true,
            bias: true,
        };
        let through = Through::new(&grad, &[]);
        for products in every_kind() {
            let taken = in_one_pass(products, &x, &weight, through, shape, all).is_some();
            assert!(taken, "{products:?}");
            let no_input = Wanted {
                input: false,
                ..all
            };
            let skipped = in_one_pass(products, &x, &weight, through, shape, no_input);
            assert!(skipped.is_none(), "{products:?} without the input gradient");
            let valid = Shape::of([1, 32, 32], [8, 8], [3, 3], [0, 0]);
            let grad = values(32 * 36, 4);
            let through = Through::new(&grad, &[]);
            let other = in_one_pass(products, &x, &weight, through, valid, all);
            assert!(other.is_none(), "{products:?} with another padding");
        }
    }

    /// For every kind of products this CPU runs, no mask, one and two (a ResBlock's), the
    /// model's shapes, odd channel counts (a lone last channel in its pair), 5x5 and 1x3
    /// kernels, a padding that does not keep the size (the step-by-step path), and each
    /// subset of gradients asked: the input and kernel gradients are the same bits as the mask
    /// followed by each gradient alone (each checked against its definition in
    /// [`super::super::conv_gradient`]'s tests), the bias gradient within f64 rounding of its
    /// sum. Masks with zeros, negatives and a NaN (which passes, as in `relu_mask`).
    #[test]
    fn one_call_gives_the_gradients_of_the_masked_gradient() {
        let shape = Shape::same_3x3;
        for (i, shape) in [
            shape(2, 32, [11, 17], 32),
            shape(1, 96, [9, 8], 128),
            shape(2, 6, [13, 21], 32),
            shape(2, 7, [10, 9], 5),
            shape(1, 32, [12, 15], 3),
            Shape::of([2, 8, 6], [9, 10], [5, 5], [2, 2]),
            Shape::of([1, 6, 4], [7, 12], [1, 3], [0, 1]),
            Shape::of([1, 5, 6], [9, 10], [3, 3], [0, 0]),
        ]
        .into_iter()
        .enumerate()
        {
            let seed = 90 + 5 * i as u64;
            let [out_h, out_w] = shape.out_size();
            let out_len = shape.batch * shape.channels_out * out_h * out_w;
            let x = values(
                shape.batch * shape.channels_in * shape.size[0] * shape.size[1],
                seed,
            );
            let weight = values(
                shape.channels_out * shape.channels_in * shape.taps(),
                seed + 1,
            );
            let grad = values(out_len, seed + 2);
            let mut first = values(out_len, seed + 3);
            first[3] = f32::NAN;
            first[4] = 0.0;
            let second = values(out_len, seed + 4);
            let mask_sets: [&[&[f32]]; 3] = [&[], &[&first], &[&first, &second]];
            for outputs in mask_sets {
                let masked = relu_mask(&grad, outputs);
                for products in every_kind() {
                    let input =
                        input_gradient_on(products, Input::Floats(&[&masked]), &weight, shape);
                    let kernel = weight_gradient_on(products, &x, &masked, shape);
                    let bias =
                        bias_gradient(&masked, shape.batch, shape.channels_out, out_h * out_w);
                    for wanted in [
                        Wanted {
                            input: true,
                            weight: true,
                            bias: true,
                        },
                        Wanted {
                            input: true,
                            weight: false,
                            bias: false,
                        },
                        Wanted {
                            input: false,
                            weight: true,
                            bias: true,
                        },
                        Wanted {
                            input: true,
                            weight: true,
                            bias: false,
                        },
                    ] {
                        let through = Through::new(&grad, outputs);
                        let got = backward_on(products, &x, &weight, through, shape, wanted);
                        let case = format!(
                            "{shape:?}, {} masks, {products:?}, {wanted:?}",
                            outputs.len()
                        );
                        assert_eq!(got.input.is_some(), wanted.input, "{case}");
                        assert_eq!(got.weight.is_some(), wanted.weight, "{case}");
                        assert_eq!(got.bias.is_some(), wanted.bias, "{case}");
                        if let Some(got) = got.input {
                            assert!(got == input, "{case}: input gradient");
                        }
                        if let Some(got) = got.weight {
                            assert!(got == kernel, "{case}: kernel gradient");
                        }
                        if let Some(got) = got.bias {
                            let scale = grad.iter().map(|v| v.abs()).sum::<f32>();
                            for (o, (a, b)) in got.iter().zip(&bias).enumerate() {
                                assert!(
                                    (a - b).abs() <= 1e-6 * scale,
                                    "{case}: bias gradient {o}: {a} vs {b}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
