//! [`BrnBackend`]: burn's `Backend` plus the operations BRN runs its own way where a backend
//! has kernels for them. Two groups:
//!
//! - **what the model calls**: [`BrnBackend::conv2d_fused`] (a convolution with the
//!   concatenation before it and the ReLU and residual add after it) and
//!   [`BrnBackend::lstm_gates`];
//! - **hooks of the autodiff nodes** (`adapters::autodiff`, `adapters::autodiff_lstm`), which
//!   only those nodes call: the forward pieces a recorded node keeps apart
//!   ([`BrnBackend::relu_add`]) and the backward steps (ReLU masks, the LSTM's two steps, the
//!   convolution's three gradients, and [`BrnBackend::conv2d_backward`], which runs those
//!   by default).
//!
//! Every method defaults to its [`reference`] version (burn's tensor operations), so a backend
//! without kernels needs an empty `impl`; the adapters override what their kernels cover and
//! fall back to the reference for shapes and types the kernels do not take.

use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, FloatTensor};

use super::{reference, After, Gradients, Wanted};

/// A burn backend that runs the BRN family: burn's operations plus the ones below.
pub trait BrnBackend: Backend {
    // What the model calls.

    /// A convolution over the channel-wise concatenation of `inputs`, then `after`: what the
    /// model runs as `cat`, `conv2d`, ReLU and add. Those operations by default; flex does it
    /// all in one pass, the autodiff backend records one node.
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
        reference::fused::<Self>(inputs, weight, bias, options, after)
    }

    /// The convolutional LSTM's gate arithmetic after its gate convolution
    /// ([`reference::lstm`]): tensor operations by default (the autodiff backend records two
    /// nodes instead, whose backward passes are [`BrnBackend::lstm_hidden_backward`] and
    /// [`BrnBackend::lstm_cell_backward`]).
    ///
    /// # Shapes
    /// - `gates`: `[N, 4C, H, W]` (`i; f; g; o`), `cell`: `[N, C, H, W]`
    /// - returns `(hidden, cell)`, `[N, C, H, W]` each
    fn lstm_gates(
        gates: FloatTensor<Self>,
        cell: Option<FloatTensor<Self>>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        reference::lstm::forward_primitive::<Self>(gates, cell)
    }

    // Hooks of the autodiff nodes.

    /// `relu(a + b)`: a ResBlock's residual add, as the autodiff node runs it apart from the
    /// convolution (the forward pass alone fuses it into [`BrnBackend::conv2d_fused`]).
    ///
    /// # Shapes
    /// - `a`, `b`: the same shape → that shape
    fn relu_add(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        reference::relu_add::<Self>(a, b)
    }

    /// `grad` where every one of `outputs` is positive, zero elsewhere: the gradient through
    /// the ReLUs whose outputs were `outputs`.
    ///
    /// # Shapes
    /// - `grad`, each of `outputs`: the same shape → that shape
    fn relu_mask(grad: FloatTensor<Self>, outputs: Vec<FloatTensor<Self>>) -> FloatTensor<Self> {
        reference::relu_mask::<Self>(grad, outputs)
    }

    /// `cat(parts, 1)`: the autodiff backend's concatenation of a convolution's input parts.
    /// burn's `cat` by default; on flex a copy on every core (flex's copies on one thread).
    ///
    /// # Shapes
    /// - `parts`: `[N, C_i, H, W]` each → `[N, Σ C_i, H, W]`
    fn cat_channels(parts: Vec<FloatTensor<Self>>) -> FloatTensor<Self> {
        Self::float_cat(parts, 1)
    }

    /// Channels `start..start + channels` of `x` as a tensor of their own: the autodiff
    /// backend's concatenation hands each part its gradient so. burn's slice (a view) by
    /// default; a contiguous copy on flex, whose add of a view is a strided loop on one thread.
    ///
    /// # Shapes
    /// - `x`: `[N, C, H, W]` → `[N, channels, H, W]`
    fn channels_of(x: FloatTensor<Self>, start: usize, channels: usize) -> FloatTensor<Self> {
        reference::channels_of::<Self>(x, start, channels)
    }

    /// The LSTM's backward step through `h' = σ(o)·tanh(c')`: `(dc', do)`, the gradient of
    /// the new cell and of the output gate's input.
    ///
    /// # Shapes
    /// - `grad_hidden`, `cell` (`c'`): `[N, C, H, W]`, `gates`: `[N, 4C, H, W]`
    /// - returns `[N, C, H, W]` each
    fn lstm_hidden_backward(
        grad_hidden: FloatTensor<Self>,
        gates: FloatTensor<Self>,
        cell: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        reference::lstm::hidden_backward_primitive::<Self>(grad_hidden, gates, cell)
    }

    /// The LSTM's backward step through `c' = σ(f)·c + σ(i)·tanh(g)`: the gates' gradient
    /// (with the output gate's `grad_output` from [`BrnBackend::lstm_hidden_backward`], zero
    /// without it) and the previous cell's (where there was one).
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
        reference::lstm::cell_backward_primitive::<Self>(grad_cell, grad_output, gates, previous)
    }

    /// A convolution's gradients (those `wanted`) from the gradient of its output through the
    /// ReLUs whose outputs were `masks` (none, one, or a ResBlock's two): by default
    /// [`BrnBackend::relu_mask`], then [`BrnBackend::conv2d_input_gradient`],
    /// [`BrnBackend::conv2d_weight_gradient`] and [`BrnBackend::conv2d_bias_gradient`]; flex
    /// with bfloat16 products applies the mask in the passes that round the gradient.
    ///
    /// # Shapes
    /// - `x`: `[N, C_in, H, W]`, `weight`: `[C_out, C_in, K_h, K_w]`, `output_grad` and each
    ///   of `masks`: `[N, C_out, H_out, W_out]`
    /// - [`Gradients`]: `[N, C_in, H, W]`, `[C_out, C_in, K_h, K_w]`, `[C_out]`
    fn conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        masks: Vec<FloatTensor<Self>>,
        options: ConvOptions<2>,
        wanted: Wanted,
    ) -> Gradients<FloatTensor<Self>> {
        conv2d_backward_by_steps::<Self>(x, weight, output_grad, masks, options, wanted)
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
    /// the pixels.
    ///
    /// # Shapes
    /// - `output_grad`: `[N, C_out, H_out, W_out]` → `[C_out]`
    fn conv2d_bias_gradient(output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
        reference::bias_gradient::<Self>(output_grad)
    }

    /// The gradient of a convolution's weight: burn's by default; the CPU's kernel on flex,
    /// and the banded one on the GPU backends (`adapters::banded`).
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

/// [`BrnBackend::conv2d_backward`] step by step: the mask, then each gradient asked for by
/// its own hook (the default, and a backend's fallback for what its kernels do not take).
pub fn conv2d_backward_by_steps<B: BrnBackend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    masks: Vec<FloatTensor<B>>,
    options: ConvOptions<2>,
    wanted: Wanted,
) -> Gradients<FloatTensor<B>> {
    let grad = match masks.is_empty() {
        true => output_grad,
        false => B::relu_mask(output_grad, masks),
    };
    Gradients {
        bias: wanted.bias.then(|| B::conv2d_bias_gradient(grad.clone())),
        input: wanted.input.then(|| {
            B::conv2d_input_gradient(x.clone(), weight.clone(), grad.clone(), options.clone())
        }),
        weight: wanted
            .weight
            .then(|| B::conv2d_weight_gradient(x, weight, grad, options)),
    }
}
