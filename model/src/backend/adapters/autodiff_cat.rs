//! The autodiff backend's concatenation of a convolution's input parts along the channels as
//! a node whose backward pass hands each part its channels of the gradient as a tensor of its
//! own ([`BrnBackend::channels_of`]: a contiguous copy on flex), where burn's `cat` hands out
//! views. A part that also feeds other layers (the LSTM's hidden states, each read by its own
//! branch's next stage and by the other branch) sums its gradients, and flex adds a view
//! element by element through a strided iterator, on one thread: 4 % of a training step.
//!
//! Parents: the parts, two or three (the recurrent layers' `cat[features, h(, h_other)]`);
//! another count goes to burn's `cat`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::ops::FloatTensor;
use burn::tensor::TensorMetadata;

use crate::backend::BrnBackend;

/// `cat(parts, 1)` with the parts as parents.
#[derive(Debug)]
struct Concatenation;

impl<B: BrnBackend, const N: usize> Backward<B, N> for Concatenation {
    /// Each part's channels.
    type State = [usize; N];

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let mut start = 0;
        for (parent, channels) in ops.parents.iter().zip(ops.state) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, B::channels_of(grad.clone(), start, channels));
            }
            start += channels;
        }
    }
}

/// `cat(parts, 1)` recorded as a [`Concatenation`] node for two or three parts (burn's `cat`
/// for one part or more than three).
///
/// # Shapes
/// - `parts`: `[N, C_i, H, W]` each → `[N, Σ C_i, H, W]`
pub fn concatenate<B: BrnBackend, C: CheckpointStrategy>(
    parts: Vec<FloatTensor<Autodiff<B, C>>>,
) -> FloatTensor<Autodiff<B, C>> {
    use burn::tensor::ops::FloatTensorOps;
    match parts.len() {
        2 => record::<B, C, 2>(parts.try_into().expect("two parts")),
        3 => record::<B, C, 3>(parts.try_into().expect("three parts")),
        1 => parts.into_iter().next().expect("one part"),
        _ => Autodiff::<B, C>::float_cat(parts, 1),
    }
}

/// [`concatenate`] for `N` parts.
fn record<B: BrnBackend, C: CheckpointStrategy, const N: usize>(
    parts: [FloatTensor<Autodiff<B, C>>; N],
) -> FloatTensor<Autodiff<B, C>> {
    let channels = parts.each_ref().map(|part| part.primitive.shape()[1]);
    let nodes = parts.each_ref().map(|part| part.node.clone());
    let output = B::cat_channels(parts.map(|part| part.primitive).into());
    match <Concatenation as Backward<B, N>>::prepare::<C>(Concatenation, nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(channels, output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}
