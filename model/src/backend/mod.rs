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
pub use extension::{conv2d_backward_by_steps, BrnBackend};
/// A convolution's gradients asked of [`BrnBackend::conv2d_backward`] and given by it (as
/// tensors in the trait, as `Vec<f32>` in the kernels).
pub use kernels::conv_backward::{Gradients, Wanted};
/// What follows a convolution in every layer: with the shortcut as a tensor in the trait, as a
/// slice in the kernels.
pub use kernels::After;
pub use kernels::Precision;
pub use kernels::Simd;

use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::{Tensor, TensorPrimitive};
use std::ops::Range;

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

/// One part of a convolution's concatenated input: a tensor, or zeros of so many channels (a
/// recurrent state before the first stage), whose products are skipped, not computed.
#[derive(Clone, Debug)]
pub enum Part<B: Backend> {
    /// A part as a tensor, `[N, C_i, H, W]`.
    Tensor(Tensor<B, 4>),
    /// A part of `C_i` channels that are all zero.
    Zeros(usize),
}

impl<B: Backend> Part<B> {
    /// The part's channels, `C_i`.
    fn channels(&self) -> usize {
        match self {
            Part::Tensor(tensor) => tensor.dims()[1],
            Part::Zeros(channels) => *channels,
        }
    }
}

/// `conv(cat(parts, channels))`, the concatenation never made where the backend fuses it; the
/// kernel's channels that meet a [`Part::Zeros`] are left out (a zero input adds nothing to
/// the output, and those weights get no gradient from it), so the result is the full
/// convolution's at a fraction of its products.
///
/// # Shapes
/// - `parts`: `[N, C_i, H, W]` each (or `C_i` zero channels), `Σ C_i = C_in`, at least one a
///   tensor → `[N, C_out, H_out, W_out]`
pub(crate) fn conv2d_cat<B: BrnBackend>(conv: &Conv2d<B>, parts: Vec<Part<B>>) -> Tensor<B, 4> {
    let [n, _, h, w] = parts
        .iter()
        .find_map(|part| match part {
            Part::Tensor(tensor) => Some(tensor.dims()),
            Part::Zeros(_) => None,
        })
        .expect("conv2d_cat needs one part that is not zeros");
    let Some(padding) = symmetric_padding(conv) else {
        // burn's own convolution, over the concatenation with its zeros made.
        let parts = parts.into_iter().map(|part| match part {
            Part::Tensor(tensor) => tensor,
            Part::Zeros(c) => Tensor::zeros([n, c, h, w], &conv.weight.device()),
        });
        return conv.forward(Tensor::cat(parts.collect(), 1));
    };
    let mut inputs = Vec::with_capacity(parts.len());
    // The kernel's input channels that meet a tensor, adjacent ones as one range.
    let mut ranges: Vec<Range<usize>> = Vec::with_capacity(parts.len());
    let mut first = 0;
    for part in parts {
        let channels = part.channels();
        if let Part::Tensor(tensor) = part {
            inputs.push(tensor);
            match ranges.last_mut() {
                Some(last) if last.end == first => last.end = first + channels,
                _ => ranges.push(first..first + channels),
            }
        }
        first += channels;
    }
    let weight = conv.weight.val();
    let weight = if ranges.len() == 1 && ranges[0] == (0..first) {
        weight
    } else {
        let slices = ranges
            .into_iter()
            .map(|range| weight.clone().narrow(1, range.start, range.len()));
        Tensor::cat(slices.collect(), 1)
    };
    run_fused(conv, padding, weight, inputs, After::Nothing)
}

/// The module's padding as `[rows, columns]` where it is explicit and symmetric (the model's,
/// which [`BrnBackend::conv2d_fused`] takes); `None` for any other.
fn symmetric_padding<B: Backend>(conv: &Conv2d<B>) -> Option<[usize; 2]> {
    match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            Some([top, left])
        }
        _ => None,
    }
}

/// A convolution module over `inputs` then `after`, through [`BrnBackend::conv2d_fused`];
/// padding other than explicit and symmetric (the model's) goes through burn's operations.
fn fused<B: BrnBackend>(
    conv: &Conv2d<B>,
    inputs: Vec<Tensor<B, 4>>,
    after: After<Tensor<B, 4>>,
) -> Tensor<B, 4> {
    let Some(padding) = symmetric_padding(conv) else {
        let y = primitive(conv.forward(Tensor::cat(inputs, 1)));
        return tensor(reference::after::<B>(y, after.map(primitive)));
    };
    run_fused(conv, padding, conv.weight.val(), inputs, after)
}

/// [`BrnBackend::conv2d_fused`] with the module's options and bias, its kernel given as
/// `weight` (all of it, or the input channels that meet `inputs`).
fn run_fused<B: BrnBackend>(
    conv: &Conv2d<B>,
    padding: [usize; 2],
    weight: Tensor<B, 4>,
    inputs: Vec<Tensor<B, 4>>,
    after: After<Tensor<B, 4>>,
) -> Tensor<B, 4> {
    let options = ConvOptions::new(conv.stride, padding, conv.dilation, conv.groups);
    tensor(B::conv2d_fused(
        inputs.into_iter().map(primitive).collect(),
        primitive(weight),
        conv.bias.as_ref().map(|bias| primitive(bias.val())),
        options,
        after.map(primitive),
    ))
}
