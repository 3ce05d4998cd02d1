//! The operations BRN runs its own way, in three layers:
//!
//! 1. **kernels** (the `kernels` crate, run by the flex adapter): the CPU's convolution and its two gradients, the
//!    LSTM's gate arithmetic forward and backward in one pass each, the element-wise steps
//!    around a convolution, on plain `f32` slices with no burn types, and the one switch
//!    between every core and one thread;
//! 2. **the extension trait** ([`BrnBackend`], `extension.rs`): burn's `Backend` plus what
//!    the model calls and the hooks the autodiff nodes call, each defaulting to its
//!    [`reference`] version (burn's tensor operations);
//! 3. **adapters** (`adapters/`): flex (tensors to slices and back, the kernels' limits), the
//!    autodiff backend (a convolution with its ReLU and add as one node, the LSTM as two),
//!    and the GPU backends (the banded weight gradient, [`banded`]).
//!
//! The model calls the functions here ([`conv2d`] and its fused forms) and
//! [`BrnBackend::lstm_gates`]; [`After`] names what follows a convolution in every layer.

mod adapters;
mod extension;
pub mod reference;

pub use adapters::banded;
#[cfg(feature = "flex")]
pub use adapters::precision::{in_full_precision, products_in_use, set_mixed_precision};
pub use extension::BrnBackend;
/// What follows a convolution in every layer: with the shortcut as a tensor in the trait, as a
/// slice in the kernels.
pub use kernels::After;
pub use kernels::Precision;

use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::{Tensor, TensorPrimitive};

/// A float tensor's primitive, as [`BrnBackend`]'s methods take it.
pub(crate) fn primitive<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
}

/// A primitive, as [`BrnBackend`]'s methods return it, as a float tensor of rank `D`.
pub(crate) fn tensor<B: Backend, const D: usize>(primitive: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

/// Whether a convolution is the kind our own kernels (the CPU's, the GPUs' banded weight
/// gradient) compute: stride 1, dilation 1, one group, as every BRN convolution.
pub(crate) fn is_plain(options: &ConvOptions<2>) -> bool {
    options.stride == [1, 1] && options.dilation == [1, 1] && options.groups == 1
}

/// Run a convolution module through [`BrnBackend::conv2d_fused`] with its parameters.
///
/// # Shapes
/// - `x`: `[N, C_in, H, W]` → `[N, C_out, H_out, W_out]`
pub(crate) fn conv2d<B: BrnBackend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    fused(conv, vec![x], After::Nothing)
}

/// `relu(conv(x))`.
///
/// # Shapes
/// - `x`: `[N, C_in, H, W]` → `[N, C_out, H_out, W_out]`
pub(crate) fn conv2d_relu<B: BrnBackend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    fused(conv, vec![x], After::Relu)
}

/// `relu(relu(conv(x)) + shortcut)`: the end of a ResBlock.
///
/// # Shapes
/// - `x`: `[N, C_in, H, W]`, `shortcut`: `[N, C_out, H_out, W_out]` → as `shortcut`
pub(crate) fn conv2d_relu_add<B: BrnBackend>(
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
pub(crate) fn conv2d_cat<B: BrnBackend>(
    conv: &Conv2d<B>,
    parts: Vec<Tensor<B, 4>>,
) -> Tensor<B, 4> {
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
        return tensor(reference::after::<B>(y, after));
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
