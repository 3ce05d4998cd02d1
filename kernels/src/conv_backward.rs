//! A convolution's three gradients in one call, from its output gradient through the ReLUs
//! that followed it ([`Through`]: the mask not yet applied), as a training step's backward
//! pass asks for them.
//!
//! Where bfloat16 products compute both gradients (mixed precision on a CPU with AVX512_BF16
//! or AMX) of a convolution whose padding keeps the size (every BRN convolution), the output
//! gradient is read once: one pass masks it, rounds it to the input gradient's padded bfloat16
//! channel pairs and sums the bias gradient ([`super::bf16::pad_pairs_through`]), and the
//! weight gradient reads its bands from those pairs (half the bytes of the floats, and no mask
//! to read again). The mask pass, the bias pass and the weight gradient's reading of the
//! floats are gone. Elsewhere: the mask ([`super::elementwise::relu_mask`]), then
//! [`input_gradient`], [`weight_gradient`] and [`bias_gradient`].
//!
//! Contract: as [`super::conv_gradient`]; the same values as the mask followed by the three
//! gradients (the bias gradient summed in another fixed order, each plane row by row).

use super::conv_gradient::{bias_gradient, input_gradient, weight_gradient};
use super::elementwise::Through;
use super::layout::Shape;
use super::products::Precision;

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
    let [out_h, out_w] = shape.out_size();
    let out_plane = out_h * out_w;
    assert_eq!(
        output_grad.len(),
        shape.batch * shape.channels_out * out_plane,
        "output gradient of another shape"
    );
    #[cfg(target_arch = "x86_64")]
    if let Some(gradients) = in_bfloat16_passes(x, weight, output_grad, shape, precision, wanted) {
        return gradients;
    }
    let masked = match output_grad.unmasked() {
        Some(grad) => std::borrow::Cow::Borrowed(grad),
        None => std::borrow::Cow::Owned(output_grad.masked()),
    };
    let (batch, c_out) = (shape.batch, shape.channels_out);
    Gradients {
        input: wanted
            .input
            .then(|| input_gradient(&masked, weight, shape, precision)),
        weight: wanted
            .weight
            .then(|| weight_gradient(x, &masked, shape, precision)),
        bias: wanted
            .bias
            .then(|| bias_gradient(&masked, batch, c_out, out_plane)),
    }
}

/// [`backward`] with the mask applied in the passes that round the output gradient to
/// bfloat16, where this CPU's bfloat16 products take both gradients of `shape` at
/// `precision` and the input gradient is wanted (its pass sums the bias gradient too); else
/// `None`.
#[cfg(target_arch = "x86_64")]
fn in_bfloat16_passes(
    x: &[f32],
    weight: &[f32],
    output_grad: Through,
    shape: Shape,
    precision: Precision,
    wanted: Wanted,
) -> Option<Gradients> {
    use super::conv::Input;
    use super::conv_gradient::{bf16_weight_gradient, input_gradient_on, transposed};
    use super::conv_gradient::{OutputGrad, PairProducts};
    use super::products::Products;

    // The weight gradient reads the padded pairs in place where the padding keeps the size.
    let keeps_size = (0..2).all(|k| 2 * shape.padding[k] + 1 == shape.kernel[k]);
    if !wanted.input || !keeps_size {
        return None;
    }
    let products = Products::best(precision);
    let transposed = transposed(shape);
    let pairs = match products.for_shape(transposed) {
        Products::Avx512Bf16 => super::avx512_bf16::pairs(shape.channels_out),
        #[cfg(target_os = "linux")]
        Products::Amx => super::amx::pairs(shape.channels_out),
        _ => return None,
    };
    let weight_products = match wanted.weight {
        true => Some(PairProducts::of(products, shape)?),
        false => None,
    };
    let (padded, bias) = super::bf16::pad_pairs_through(output_grad, transposed, pairs);
    let words = OutputGrad::Pairs {
        words: &padded,
        pairs,
    };
    let weight_gradient = weight_products.map(|p| bf16_weight_gradient(p, x, words, shape));
    Some(Gradients {
        input: Some(input_gradient_on(
            products,
            Input::Pairs(&padded),
            weight,
            shape,
        )),
        weight: weight_gradient,
        bias: wanted.bias.then_some(bias),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elementwise::relu_mask;
    use crate::values;

    /// Where the CPU has bfloat16 products, mixed precision takes the bfloat16 passes for the
    /// model's 32 → 32 convolution (so that the test below checks them, not the composed path
    /// twice).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn mixed_precision_takes_the_bfloat16_passes_where_the_cpu_has_them() {
        let shape = Shape::of([1, 32, 32], [8, 8], [3, 3], [1, 1]);
        let (x, weight, grad) = (values(2048, 1), values(9216, 2), values(2048, 3));
        let all = Wanted {
            input: true,
            weight: true,
            bias: true,
        };
        let through = Through::new(&grad, &[]);
        let taken =
            in_bfloat16_passes(&x, &weight, through, shape, Precision::Mixed, all).is_some();
        let has = !crate::products::Products::all_mixed().is_empty();
        assert_eq!(taken, has, "bfloat16 products on this CPU: {has}");
        let f32s = in_bfloat16_passes(&x, &weight, through, shape, Precision::F32, all);
        assert!(f32s.is_none(), "f32 products take no bfloat16 pass");
    }

    /// The mask, then each gradient alone (each checked against its definition in
    /// [`super::super::conv_gradient`]'s tests): the reference the one call must equal.
    fn one_by_one(
        x: &[f32],
        weight: &[f32],
        grad: &[f32],
        outputs: &[&[f32]],
        shape: Shape,
        precision: Precision,
    ) -> [Vec<f32>; 3] {
        let masked = relu_mask(grad, outputs);
        let [out_h, out_w] = shape.out_size();
        [
            input_gradient(&masked, weight, shape, precision),
            weight_gradient(x, &masked, shape, precision),
            bias_gradient(&masked, shape.batch, shape.channels_out, out_h * out_w),
        ]
    }

    /// At both precisions (mixed takes the bfloat16 passes on a CPU with AVX512_BF16 or AMX,
    /// the composed path elsewhere), for no mask, one and two (a ResBlock's), for the model's
    /// shapes and odd channel counts (a lone last channel in its pair), and for each subset of
    /// gradients asked: the input and kernel gradients are the same bits as the mask followed
    /// by the gradients alone, the bias gradient within f64 rounding of its sum. Masks with
    /// zeros, negatives and a NaN (which passes, as in `relu_mask`). 3x3, 5x5 and 1x3 kernels.
    #[test]
    fn one_call_gives_the_gradients_of_the_masked_gradient() {
        let shape = |batch, channels_in, size, channels_out| {
            Shape::of([batch, channels_in, channels_out], size, [3, 3], [1, 1])
        };
        for (i, shape) in [
            shape(2, 32, [11, 17], 32),
            shape(1, 96, [9, 8], 128),
            shape(2, 6, [13, 21], 32),
            shape(2, 7, [10, 9], 5),
            shape(1, 32, [12, 15], 3),
            // Other kernels whose padding keeps the size (the bands read from the padded
            // pairs at other offsets).
            Shape::of([2, 8, 6], [9, 10], [5, 5], [2, 2]),
            Shape::of([1, 6, 4], [7, 12], [1, 3], [0, 1]),
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
                for precision in [Precision::F32, Precision::Mixed] {
                    let [input, kernel, bias] =
                        one_by_one(&x, &weight, &grad, outputs, shape, precision);
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
                        let got = backward(&x, &weight, through, shape, precision, wanted);
                        let case = format!(
                            "{shape:?}, {} masks, {precision:?}, {wanted:?}",
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
                            for (o, (a, b)) in got.iter().zip(&bias).enumerate() {
                                let scale = grad.iter().map(|v| v.abs()).sum::<f32>();
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
