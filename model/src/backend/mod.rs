//! The operations BRN runs its own way, as a backend extension: [`BrnBackend`] is burn's
//! `Backend` plus the BRN convolution (forward and both gradients, and the forward fused with
//! the concatenation before it and the ReLU and residual add after it) and the LSTM's gate
//! arithmetic forward and backward, each with burn's operations as the default. The model
//! calls [`conv2d`] (and its fused forms) and [`BrnBackend::lstm_gates`]; the autodiff backend
//! records our own nodes for both (a convolution with its ReLU and residual add, the LSTM's
//! cell and hidden state), whose backward passes call the trait's gradient methods, and
//! burn's for the rest.
//!
//! - GPU backends (wgpu, CUDA) compute the weight gradient as many small matrix products over
//!   bands of the image ([`weight_gradient`]): burn 0.21's is one GEMM with a tiny output
//!   (`C_out x C_in·9`) and a reduction over `N·H·W`, which a GPU runs on a handful of blocks
//!   (82 % of an H200 training step's GPU time, `docs/gpu-sessions.md`).
//! - flex runs the convolution and both its gradients on [`cpu_conv`], fuses the forward with
//!   what surrounds it (no concatenated copy, ReLU and residual add on each band in cache),
//!   and runs the LSTM's gate arithmetic and its two backward steps in one pass each
//!   ([`lstm`]) and the ReLU masks and residual add in one ([`cpu_elementwise`]), all on
//!   every core.

mod autodiff;
mod autodiff_lstm;
#[cfg(feature = "flex")]
pub mod cpu_conv;
#[cfg(feature = "flex")]
pub mod cpu_elementwise;
pub mod lstm;
mod parallel;
pub mod weight_gradient;

use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::{Tensor, TensorPrimitive};

/// What follows a convolution in the model, done in the same pass where a backend can.
#[derive(Clone, Debug)]
pub enum After<T> {
    /// Nothing: `y`.
    Nothing,
    /// `relu(y)`.
    Relu,
    /// `relu(relu(y) + shortcut)`: the end of a ResBlock.
    ReluAdd(T),
}

impl<T> After<T> {
    /// The same step with its shortcut mapped by `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> After<U> {
        match self {
            After::Nothing => After::Nothing,
            After::Relu => After::Relu,
            After::ReluAdd(shortcut) => After::ReluAdd(f(shortcut)),
        }
    }
}

/// A burn backend that runs the BRN family: burn's operations plus the ones below.
pub trait BrnBackend: Backend {
    /// A 2-D convolution, as burn's `conv2d`. The autodiff backend overrides it to record a
    /// backward pass whose weight gradient is [`BrnBackend::conv2d_weight_gradient`].
    ///
    /// # Shapes
    /// - `x`: `[N, C_in, H, W]`, `weight`: `[C_out, C_in, K_h, K_w]`, `bias`: `[C_out]`
    /// - output: `[N, C_out, H_out, W_out]`
    fn brn_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, bias, options)
    }

    /// A convolution over the channel-wise concatenation of `inputs`, then `after`: what the
    /// model runs as `cat`, [`BrnBackend::brn_conv2d`], ReLU and add. Those operations by
    /// default (so autodiff records them); flex does it all in one pass.
    ///
    /// # Shapes
    /// - `inputs`: `[N, C_i, H, W]` each with `Σ C_i = C_in`; `weight`: `[C_out, C_in, K_h,
    ///   K_w]`, `bias`: `[C_out]`; `after`'s shortcut: as the output
    /// - output: `[N, C_out, H_out, W_out]`
    fn conv2d_fused(
        inputs: Vec<FloatTensor<Self>>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
        after: After<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        fused_by_tensor_ops::<Self>(inputs, weight, bias, options, after)
    }

    /// `relu(a + b)`: a ResBlock's residual add, as the autodiff backend runs it (the
    /// forward pass alone fuses it into [`BrnBackend::conv2d_fused`]). burn's add and ReLU by
    /// default.
    ///
    /// # Shapes
    /// - `a`, `b`: the same shape → that shape
    fn relu_add(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        relu_add_by_tensor_ops::<Self>(a, b)
    }

    /// `grad` where every one of `outputs` is positive, zero elsewhere: the gradient through
    /// the ReLUs whose outputs were `outputs`. burn's `relu_backward`, one after another, by
    /// default.
    ///
    /// # Shapes
    /// - `grad`, each of `outputs`: the same shape → that shape
    fn relu_mask(grad: FloatTensor<Self>, outputs: Vec<FloatTensor<Self>>) -> FloatTensor<Self> {
        relu_mask_by_tensor_ops::<Self>(grad, outputs)
    }

    /// The convolutional LSTM's gate arithmetic after its gate convolution ([`lstm`]): burn's
    /// tensor operations by default (the autodiff backend records two nodes instead, whose
    /// backward passes are [`BrnBackend::lstm_hidden_backward`] and
    /// [`BrnBackend::lstm_cell_backward`]).
    ///
    /// # Shapes
    /// - `gates`: `[N, 4C, H, W]` (`i; f; g; o`), `cell`: `[N, C, H, W]`
    /// - returns `(hidden, cell)`, `[N, C, H, W]` each
    fn lstm_gates(
        gates: FloatTensor<Self>,
        cell: Option<FloatTensor<Self>>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        lstm::by_tensor_ops_primitive::<Self>(gates, cell)
    }

    /// The LSTM's backward step through `h' = σ(o)·tanh(c')` ([`lstm`]): `(dc', do)`, the
    /// gradient of the new cell and of the output gate's input. Tensor operations by default.
    ///
    /// # Shapes
    /// - `grad_hidden`, `cell` (`c'`): `[N, C, H, W]`, `gates`: `[N, 4C, H, W]`
    /// - returns `[N, C, H, W]` each
    fn lstm_hidden_backward(
        grad_hidden: FloatTensor<Self>,
        gates: FloatTensor<Self>,
        cell: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        lstm::hidden_backward_primitive::<Self>(grad_hidden, gates, cell)
    }

    /// The LSTM's backward step through `c' = σ(f)·c + σ(i)·tanh(g)` ([`lstm`]): the gates'
    /// gradient (with the output gate's `grad_output` from [`BrnBackend::lstm_hidden_backward`],
    /// zero without it) and the previous cell's (where there was one). Tensor operations by
    /// default.
    ///
    /// # Shapes
    /// - `grad_cell` (`dc'`), `grad_output`, `previous` (`c`): `[N, C, H, W]`, `gates`:
    ///   `[N, 4C, H, W]`
    /// - returns `[N, 4C, H, W]` and `[N, C, H, W]`
    fn lstm_cell_backward(
        grad_cell: FloatTensor<Self>,
        grad_output: Option<FloatTensor<Self>>,
        gates: FloatTensor<Self>,
        previous: Option<FloatTensor<Self>>,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        lstm::cell_backward_primitive::<Self>(grad_cell, grad_output, gates, previous)
    }

    /// The gradient of a convolution's input: burn's by default (a transposed convolution).
    ///
    /// # Shapes
    /// - `x`: `[N, C_in, H, W]`, `weight`: `[C_out, C_in, K_h, K_w]`,
    ///   `output_grad`: `[N, C_out, H_out, W_out]`
    /// - output: `[N, C_in, H, W]`
    fn conv2d_input_gradient(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, output_grad, options)
    }

    /// The gradient of a convolution's bias: the output gradient summed over the batch and
    /// the pixels (burn's sums by default).
    ///
    /// # Shapes
    /// - `output_grad`: `[N, C_out, H_out, W_out]` → `[C_out]`
    fn conv2d_bias_gradient(output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
        bias_gradient_by_tensor_ops::<Self>(output_grad)
    }

    /// The gradient of a convolution's weight: burn's by default, or the one split over parts
    /// of the image ([`weight_gradient::split`]) where a backend runs that faster.
    ///
    /// # Shapes
    /// - `x`: `[N, C_in, H, W]`, `weight`: `[C_out, C_in, K_h, K_w]`,
    ///   `output_grad`: `[N, C_out, H_out, W_out]`
    /// - output: `[C_out, C_in, K_h, K_w]`
    fn conv2d_weight_gradient(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, output_grad, options)
    }
}

/// [`BrnBackend::conv2d_fused`] as separate operations: `cat`, the convolution, ReLU, add.
pub fn fused_by_tensor_ops<B: BrnBackend>(
    inputs: Vec<FloatTensor<B>>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    options: ConvOptions<2>,
    after: After<FloatTensor<B>>,
) -> FloatTensor<B> {
    let y = B::brn_conv2d(concatenated::<B>(inputs), weight, bias, options);
    after_by_tensor_ops::<B>(y, after)
}

/// The inputs concatenated along the channels (one input as it is).
pub fn concatenated<B: Backend>(mut inputs: Vec<FloatTensor<B>>) -> FloatTensor<B> {
    match inputs.len() {
        1 => inputs.pop().expect("one input"),
        _ => B::float_cat(inputs, 1),
    }
}

/// `after` applied to a convolution's output `y` as burn's ReLU and add.
pub fn after_by_tensor_ops<B: Backend>(
    y: FloatTensor<B>,
    after: After<FloatTensor<B>>,
) -> FloatTensor<B> {
    match after {
        After::Nothing => y,
        After::Relu => B::relu(y),
        After::ReluAdd(shortcut) => B::relu(B::float_add(B::relu(y), shortcut)),
    }
}

/// [`BrnBackend::relu_add`] as burn's add and ReLU.
pub fn relu_add_by_tensor_ops<B: Backend>(a: FloatTensor<B>, b: FloatTensor<B>) -> FloatTensor<B> {
    B::relu(B::float_add(a, b))
}

/// [`BrnBackend::relu_mask`] as burn's `relu_backward`, one output after another.
pub fn relu_mask_by_tensor_ops<B: Backend>(
    grad: FloatTensor<B>,
    outputs: Vec<FloatTensor<B>>,
) -> FloatTensor<B> {
    outputs
        .into_iter()
        .fold(grad, |grad, output| B::relu_backward(output, grad))
}

/// [`BrnBackend::conv2d_bias_gradient`] as burn's sums.
pub fn bias_gradient_by_tensor_ops<B: Backend>(output_grad: FloatTensor<B>) -> FloatTensor<B> {
    use burn::tensor::TensorMetadata;
    let channels = output_grad.shape().dims::<4>()[1];
    let summed = B::float_sum_dim(B::float_sum_dim(B::float_sum_dim(output_grad, 0), 2), 3);
    B::float_reshape(summed, [channels].into())
}

/// A float tensor's primitive, as [`BrnBackend`]'s methods take it.
pub fn primitive<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
}

/// A primitive, as [`BrnBackend`]'s methods return it, as a float tensor of rank `D`.
pub fn tensor<B: Backend, const D: usize>(primitive: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

/// Whether a convolution is the kind our own kernels ([`weight_gradient`], `cpu_conv`)
/// compute: stride 1, dilation 1, one group, as every BRN convolution.
pub fn is_plain(options: &ConvOptions<2>) -> bool {
    options.stride == [1, 1] && options.dilation == [1, 1] && options.groups == 1
}

/// Run a convolution module through [`BrnBackend::brn_conv2d`] with its parameters.
///
/// # Shapes
/// - `x`: `[N, C_in, H, W]` → `[N, C_out, H_out, W_out]`
pub fn conv2d<B: BrnBackend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    fused(conv, vec![x], After::Nothing)
}

/// `relu(conv(x))`.
///
/// # Shapes
/// - `x`: `[N, C_in, H, W]` → `[N, C_out, H_out, W_out]`
pub fn conv2d_relu<B: BrnBackend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    fused(conv, vec![x], After::Relu)
}

/// `relu(relu(conv(x)) + shortcut)`: the end of a ResBlock.
///
/// # Shapes
/// - `x`: `[N, C_in, H, W]`, `shortcut`: `[N, C_out, H_out, W_out]` → as `shortcut`
pub fn conv2d_relu_add<B: BrnBackend>(
    conv: &Conv2d<B>,
    x: Tensor<B, 4>,
    shortcut: Tensor<B, 4>,
) -> Tensor<B, 4> {
    fused(conv, vec![x], After::ReluAdd(shortcut))
}

/// `conv(cat(parts, channels))`, the concatenation never made where the backend fuses it.
///
/// # Shapes
/// - `parts`: `[N, C_i, H, W]` each, `Σ C_i = C_in` → `[N, C_out, H_out, W_out]`
pub fn conv2d_cat<B: BrnBackend>(conv: &Conv2d<B>, parts: Vec<Tensor<B, 4>>) -> Tensor<B, 4> {
    fused(conv, parts, After::Nothing)
}

/// A convolution module over `inputs` then `after`, through [`BrnBackend::conv2d_fused`];
/// padding other than explicit and symmetric (the model's) goes through burn's operations.
fn fused<B: BrnBackend>(
    conv: &Conv2d<B>,
    inputs: Vec<Tensor<B, 4>>,
    after: After<Tensor<B, 4>>,
) -> Tensor<B, 4> {
    let padding = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            Some([top, left])
        }
        _ => None,
    };
    let after = after.map(primitive);
    let Some(padding) = padding else {
        let y = primitive(conv.forward(Tensor::cat(inputs, 1)));
        return tensor(after_by_tensor_ops::<B>(y, after));
    };
    let options = ConvOptions::new(conv.stride, padding, conv.dilation, conv.groups);
    tensor(B::conv2d_fused(
        inputs.into_iter().map(primitive).collect(),
        primitive(conv.weight.val()),
        conv.bias.as_ref().map(|bias| primitive(bias.val())),
        options,
        after,
    ))
}

// flex: the convolution and its gradients on `cpu_conv` (burn's split weight gradient was no
// faster than burn's own on the CPU: README, "Speed on a GPU"), the LSTM in one pass.
#[cfg(feature = "flex")]
impl BrnBackend for burn_flex::Flex {
    fn brn_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let Some(shape) = flex::shape(&x, &weight, bias.as_ref(), &options) else {
            return <Self as burn::tensor::ops::ModuleOps<Self>>::conv2d(x, weight, bias, options);
        };
        flex::convolution(&[x], &weight, bias.as_ref(), shape, &After::Nothing)
    }

    fn conv2d_fused(
        inputs: Vec<FloatTensor<Self>>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
        after: After<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        let Some(shape) = flex::fused_shape(&inputs, &weight, bias.as_ref(), &options, &after)
        else {
            return fused_by_tensor_ops::<Self>(inputs, weight, bias, options, after);
        };
        flex::convolution(&inputs, &weight, bias.as_ref(), shape, &after)
    }

    fn relu_add(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        if !flex::same_f32s(&a, &[&b]) {
            return relu_add_by_tensor_ops::<Self>(a, b);
        }
        let shape = burn::tensor::TensorMetadata::shape(&a);
        let sum = cpu_elementwise::relu_add(&flex::floats(&a), &flex::floats(&b));
        flex::tensor_of(sum, shape.as_slice())
    }

    fn relu_mask(grad: FloatTensor<Self>, outputs: Vec<FloatTensor<Self>>) -> FloatTensor<Self> {
        if !flex::same_f32s(&grad, &outputs.iter().collect::<Vec<_>>()) {
            return relu_mask_by_tensor_ops::<Self>(grad, outputs);
        }
        let shape = burn::tensor::TensorMetadata::shape(&grad);
        let outputs: Vec<_> = outputs.iter().map(flex::floats).collect();
        let outputs: Vec<&[f32]> = outputs.iter().map(|o| &**o).collect();
        let masked = cpu_elementwise::relu_mask(&flex::floats(&grad), &outputs);
        flex::tensor_of(masked, shape.as_slice())
    }

    fn lstm_gates(
        gates: FloatTensor<Self>,
        cell: Option<FloatTensor<Self>>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let Some([batch, channels, height, width]) = flex::lstm_shape(&gates, &[cell.as_ref()])
        else {
            return lstm::by_tensor_ops_primitive::<Self>(gates, cell);
        };
        let previous = cell.as_ref().map(flex::floats);
        let (hidden, cell) = lstm::in_one_pass(
            &flex::floats(&gates),
            previous.as_deref(),
            batch,
            channels,
            height * width,
        );
        let shape = [batch, channels, height, width];
        (flex::tensor(hidden, shape), flex::tensor(cell, shape))
    }

    fn lstm_hidden_backward(
        grad_hidden: FloatTensor<Self>,
        gates: FloatTensor<Self>,
        cell: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let Some(shape) = flex::lstm_shape(&gates, &[Some(&grad_hidden), Some(&cell)]) else {
            return lstm::hidden_backward_primitive::<Self>(grad_hidden, gates, cell);
        };
        let [_, channels, height, width] = shape;
        let (grad_cell, grad_output) = lstm::hidden_backward(
            &flex::floats(&grad_hidden),
            &flex::floats(&gates),
            &flex::floats(&cell),
            channels,
            height * width,
        );
        (
            flex::tensor(grad_cell, shape),
            flex::tensor(grad_output, shape),
        )
    }

    fn lstm_cell_backward(
        grad_cell: FloatTensor<Self>,
        grad_output: Option<FloatTensor<Self>>,
        gates: FloatTensor<Self>,
        previous: Option<FloatTensor<Self>>,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        let others = [Some(&grad_cell), grad_output.as_ref(), previous.as_ref()];
        let Some(shape) = flex::lstm_shape(&gates, &others) else {
            return lstm::cell_backward_primitive::<Self>(grad_cell, grad_output, gates, previous);
        };
        let [batch, channels, height, width] = shape;
        let grad_output = grad_output.as_ref().map(flex::floats);
        let previous = previous.as_ref().map(flex::floats);
        let (grad_gates, grad_previous) = lstm::cell_backward(
            &flex::floats(&grad_cell),
            grad_output.as_deref(),
            &flex::floats(&gates),
            previous.as_deref(),
            channels,
            height * width,
        );
        (
            flex::tensor(grad_gates, [batch, 4 * channels, height, width]),
            grad_previous.map(|grad| flex::tensor(grad, shape)),
        )
    }

    fn conv2d_input_gradient(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match flex::shape(&x, &weight, None, &options) {
            Some(shape) if cpu_conv::input_gradient_applies(shape) => {
                let input = cpu_conv::input_gradient(
                    &flex::floats(&output_grad),
                    &flex::floats(&weight),
                    shape,
                );
                let [height, width] = shape.size;
                flex::tensor(input, [shape.batch, shape.channels_in, height, width])
            }
            _ => <Self as burn::tensor::ops::ModuleOps<Self>>::conv2d_x_backward(
                x,
                weight,
                output_grad,
                options,
            ),
        }
    }

    fn conv2d_bias_gradient(output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
        use burn::tensor::{DType, TensorMetadata};
        if output_grad.dtype() != DType::F32 {
            return bias_gradient_by_tensor_ops::<Self>(output_grad);
        }
        let [batch, channels, height, width] = output_grad.shape().dims();
        let gradient =
            cpu_conv::bias_gradient(&flex::floats(&output_grad), batch, channels, height * width);
        flex::tensor_of(gradient, &[channels])
    }

    fn conv2d_weight_gradient(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let Some(shape) = flex::shape(&x, &weight, None, &options) else {
            return <Self as burn::tensor::ops::ModuleOps<Self>>::conv2d_weight_backward(
                x,
                weight,
                output_grad,
                options,
            );
        };
        let gradient =
            cpu_conv::weight_gradient(&flex::floats(&x), &flex::floats(&output_grad), shape);
        let [kernel_h, kernel_w] = shape.kernel;
        flex::tensor(
            gradient,
            [shape.channels_out, shape.channels_in, kernel_h, kernel_w],
        )
    }
}

/// Moving flex tensors to and from the plain `f32` slices of [`cpu_conv`].
#[cfg(feature = "flex")]
mod flex {
    use super::cpu_conv;
    use burn::tensor::ops::{ConvOptions, FloatTensor};
    use std::borrow::Cow;

    use burn::tensor::{DType, TensorData, TensorMetadata};
    use burn_flex::{Flex, FlexTensor};

    /// The convolution's sizes, where `cpu_conv` computes it: f32 tensors, stride 1, dilation 1,
    /// one group.
    pub fn shape(
        x: &FloatTensor<Flex>,
        weight: &FloatTensor<Flex>,
        bias: Option<&FloatTensor<Flex>>,
        options: &ConvOptions<2>,
    ) -> Option<cpu_conv::Shape> {
        let f32s = x.dtype() == DType::F32
            && weight.dtype() == DType::F32
            && bias.is_none_or(|b| b.dtype() == DType::F32);
        if !f32s || !super::is_plain(options) {
            return None;
        }
        let [batch, channels_in, height, width] = x.shape().dims();
        let [channels_out, _, kernel_h, kernel_w] = weight.shape().dims();
        Some(cpu_conv::Shape {
            batch,
            channels_in,
            size: [height, width],
            channels_out,
            kernel: [kernel_h, kernel_w],
            padding: options.padding,
        })
    }

    /// [`shape`] for a convolution over the concatenated `inputs` then `after`: every part
    /// and the shortcut f32, of the same batch and size, the parts' channels adding up to the
    /// weight's, the shortcut shaped as the output.
    pub fn fused_shape(
        inputs: &[FloatTensor<Flex>],
        weight: &FloatTensor<Flex>,
        bias: Option<&FloatTensor<Flex>>,
        options: &ConvOptions<2>,
        after: &super::After<FloatTensor<Flex>>,
    ) -> Option<cpu_conv::Shape> {
        let first = inputs.first()?;
        let [batch, _, height, width] = first.shape().dims();
        let mut channels = 0;
        for part in inputs {
            let [n, c, h, w] = part.shape().dims();
            if part.dtype() != DType::F32 || [n, h, w] != [batch, height, width] {
                return None;
            }
            channels += c;
        }
        let mut shape = self::shape(first, weight, bias, options)?;
        shape.channels_in = channels;
        if weight.shape().dims::<4>()[1] != channels {
            return None;
        }
        if let super::After::ReluAdd(shortcut) = after {
            let [out_h, out_w] = shape.out_size();
            if shortcut.dtype() != DType::F32
                || shortcut.shape().dims() != [batch, shape.channels_out, out_h, out_w]
            {
                return None;
            }
        }
        Some(shape)
    }

    /// `after(conv(cat(inputs), weight) + bias)` on [`cpu_conv`], `shape` from [`shape`] or
    /// [`fused_shape`].
    pub fn convolution(
        inputs: &[FloatTensor<Flex>],
        weight: &FloatTensor<Flex>,
        bias: Option<&FloatTensor<Flex>>,
        shape: cpu_conv::Shape,
        after: &super::After<FloatTensor<Flex>>,
    ) -> FloatTensor<Flex> {
        let parts: Vec<_> = inputs.iter().map(floats).collect();
        let parts: Vec<&[f32]> = parts.iter().map(|p| &**p).collect();
        let bias = bias.map(floats);
        let shortcut = match after {
            super::After::ReluAdd(s) => Some(floats(s)),
            _ => None,
        };
        let epilogue = match (after, &shortcut) {
            (super::After::Relu, _) => cpu_conv::Epilogue::Relu,
            (super::After::ReluAdd(_), Some(s)) => cpu_conv::Epilogue::ReluAdd(s),
            _ => cpu_conv::Epilogue::None,
        };
        let output = cpu_conv::conv2d(&parts, &floats(weight), bias.as_deref(), shape, epilogue);
        let [out_h, out_w] = shape.out_size();
        tensor(output, [shape.batch, shape.channels_out, out_h, out_w])
    }

    /// The tensor's values in row-major order: borrowed from its storage when it is laid out
    /// so (most tensors; no copy even when the tensor is shared, as autodiff keeps inputs),
    /// else copied.
    pub fn floats(tensor: &FloatTensor<Flex>) -> Cow<'_, [f32]> {
        let layout = tensor.layout();
        let count = layout.num_elements();
        if layout.is_contiguous() && layout.start_offset() == 0 {
            Cow::Borrowed(&tensor.storage::<f32>()[..count])
        } else {
            Cow::Owned(tensor.to_contiguous().storage::<f32>()[..count].to_vec())
        }
    }

    /// The shape `[N, C, H, W]` of an LSTM's maps, where its one-pass kernels apply: `gates`
    /// f32 `[N, 4C, H, W]` and each of `maps` (where given) f32 `[N, C, H, W]`.
    pub fn lstm_shape(
        gates: &FloatTensor<Flex>,
        maps: &[Option<&FloatTensor<Flex>>],
    ) -> Option<[usize; 4]> {
        if gates.shape().num_dims() != 4 {
            return None;
        }
        let [batch, channels4, height, width] = gates.shape().dims();
        let shape = [batch, channels4 / 4, height, width];
        let fits = |t: &FloatTensor<Flex>| {
            t.dtype() == DType::F32 && t.shape().num_dims() == 4 && t.shape().dims() == shape
        };
        let fit = gates.dtype() == DType::F32
            && channels4 % 4 == 0
            && maps.iter().flatten().all(|t| fits(t));
        fit.then_some(shape)
    }

    /// Whether `first` and every one of `others` are f32 tensors of one shape.
    pub fn same_f32s(first: &FloatTensor<Flex>, others: &[&FloatTensor<Flex>]) -> bool {
        first.dtype() == DType::F32
            && others
                .iter()
                .all(|t| t.dtype() == DType::F32 && t.shape() == first.shape())
    }

    /// A flex tensor holding `values` (moved, not copied).
    pub fn tensor(values: Vec<f32>, shape: [usize; 4]) -> FloatTensor<Flex> {
        tensor_of(values, &shape)
    }

    /// [`tensor`] of any rank.
    pub fn tensor_of(values: Vec<f32>, shape: &[usize]) -> FloatTensor<Flex> {
        FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
    }
}

#[cfg(feature = "ndarray")]
impl BrnBackend for burn_ndarray::NdArray {}

/// A GPU backend: burn's operations, with the weight gradient split into bands.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
macro_rules! split_weight_gradient {
    ($backend:ty) => {
        impl BrnBackend for $backend {
            fn conv2d_weight_gradient(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                output_grad: FloatTensor<Self>,
                options: ConvOptions<2>,
            ) -> FloatTensor<Self> {
                weight_gradient::split_or_burn::<Self>(x, weight, output_grad, options)
            }
        }
    };
}

#[cfg(feature = "wgpu")]
split_weight_gradient!(burn_wgpu::Wgpu);

#[cfg(feature = "cuda")]
split_weight_gradient!(burn_cuda::Cuda);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::conv3x3;
    use burn::backend::Autodiff;
    use burn::tensor::{Distribution, Tolerance};
    use burn_flex::Flex;

    type Ad = Autodiff<Flex>;

    /// flex's fused convolution (parts never concatenated, ReLU and shortcut on each band) is
    /// the separate operations' result bit for bit (the reference: `cat`, the convolution,
    /// ReLU and add as burn's tensor operations on flex), for every `After`.
    #[test]
    fn the_fused_convolution_is_the_separate_operations() {
        let device = Default::default();
        let conv = conv3x3::<Flex>(7, 6, &device);
        let part = |c, seed| {
            Tensor::<Flex, 4>::random([2, c, 19, 23], Distribution::Normal(0., 1.), &device)
                .add_scalar(seed)
        };
        let parts = [part(3, 0.1), part(4, -0.2)];
        let shortcut = part(6, 0.0);
        let float = |t: Tensor<Flex, 4>| t.into_primitive().tensor();
        let weight = || float(conv.weight.val());
        let bias = || {
            conv.bias
                .as_ref()
                .map(|b| b.val().into_primitive().tensor())
        };
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        for after in [
            After::Nothing,
            After::Relu,
            After::ReluAdd(shortcut.clone()),
        ] {
            let after = || after.clone().map(float);
            let inputs = || parts.iter().cloned().map(float).collect::<Vec<_>>();
            let fused = Flex::conv2d_fused(inputs(), weight(), bias(), options.clone(), after());
            let separate =
                fused_by_tensor_ops::<Flex>(inputs(), weight(), bias(), options.clone(), after());
            let bits = |t| {
                let t: Tensor<Flex, 4> = Tensor::from_primitive(TensorPrimitive::Float(t));
                t.into_data()
                    .to_vec::<f32>()
                    .unwrap()
                    .into_iter()
                    .map(f32::to_bits)
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(fused), bits(separate));
        }
    }

    /// Through the autodiff backend, [`conv2d`] and its fused forms give the output and the
    /// gradients (input parts, weight, bias, shortcut) that burn's own `Conv2d::forward`,
    /// `cat`, `relu` and `+` give (the reference), for the model's 3x3 convolution at a size
    /// where the weight gradient is split into bands.
    #[test]
    fn the_brn_convolution_has_burns_output_and_gradients() {
        use burn::tensor::activation::relu;
        let device = Default::default();
        let conv = conv3x3::<Ad>(5, 4, &device);
        let input = |c| {
            Tensor::<Ad, 4>::random([2, c, 40, 30], Distribution::Normal(0., 1.), &device)
                .require_grad()
        };
        let (x, y, shortcut) = (input(2), input(3), input(4));
        let weights =
            Tensor::<Ad, 4>::random([2, 4, 40, 30], Distribution::Normal(0., 1.), &device);
        let whole = || Tensor::cat(vec![x.clone(), y.clone()], 1);
        // Each output is made just before its backward pass (a graph per pass).
        type Form<'a> = Box<dyn Fn() -> Tensor<Ad, 4> + 'a>;
        let forms: [(&str, Form, Form); 4] = [
            (
                "conv2d",
                Box::new(|| conv2d(&conv, whole())),
                Box::new(|| conv.forward(whole())),
            ),
            (
                "conv2d_relu",
                Box::new(|| conv2d_relu(&conv, whole())),
                Box::new(|| relu(conv.forward(whole()))),
            ),
            (
                "conv2d_relu_add",
                Box::new(|| conv2d_relu_add(&conv, whole(), shortcut.clone())),
                Box::new(|| relu(relu(conv.forward(whole())) + shortcut.clone())),
            ),
            (
                "conv2d_cat",
                Box::new(|| conv2d_cat(&conv, vec![x.clone(), y.clone()])),
                Box::new(|| conv.forward(whole())),
            ),
        ];
        for (form, ours, burns) in forms {
            ours()
                .to_data()
                .assert_approx_eq::<f32>(&burns().to_data(), Tolerance::rel_abs(1e-5, 1e-5));
            let gradients = |output: Tensor<Ad, 4>| {
                let grads = (output * weights.clone()).sum().backward();
                let mut all = vec![
                    x.grad(&grads).unwrap(),
                    y.grad(&grads).unwrap(),
                    conv.weight.val().grad(&grads).unwrap(),
                ];
                all.push(
                    conv.bias
                        .as_ref()
                        .unwrap()
                        .val()
                        .grad(&grads)
                        .unwrap()
                        .reshape([1, 1, 1, 4]),
                );
                all.extend(shortcut.grad(&grads));
                all
            };
            let (ours, burns) = (gradients(ours()), gradients(burns()));
            assert_eq!(ours.len(), burns.len(), "{form}");
            for (ours, burns) in ours.iter().zip(&burns) {
                ours.to_data()
                    .assert_approx_eq::<f32>(&burns.to_data(), Tolerance::rel_abs(1e-4, 1e-4));
            }
        }
    }
}
