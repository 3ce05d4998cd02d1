//! The autodiff backend's BRN convolution: the inner backend's [`BrnBackend::brn_conv2d`]
//! forward, and a backward pass with the inner backend's [`BrnBackend::conv2d_input_gradient`]
//! and [`BrnBackend::conv2d_weight_gradient`].

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::Autodiff;
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::{Tensor, TensorPrimitive};

use super::BrnBackend;

/// The convolution without its bias, as an autodiff node with parents `[x, weight]`.
#[derive(Debug)]
struct Convolution;

impl<B: BrnBackend> Backward<B, 2> for Convolution {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [x_node, weight_node] = ops.parents;
        let output_grad = grads.consume::<B>(&ops.node);
        let (x, weight, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight);

        if let Some(node) = x_node {
            let grad = B::conv2d_input_gradient(
                x.clone(),
                weight.clone(),
                output_grad.clone(),
                options.clone(),
            );
            grads.register::<B>(node.id, grad);
        }
        if let Some(node) = weight_node {
            let grad = B::conv2d_weight_gradient(x, weight, output_grad, options);
            grads.register::<B>(node.id, grad);
        }
    }
}

impl<B: BrnBackend, C: CheckpointStrategy> BrnBackend for Autodiff<B, C> {
    fn brn_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let output = match Convolution
            .prepare::<C>([x.node.clone(), weight.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                prep.finish(
                    (x_state, weight_state, options.clone()),
                    B::brn_conv2d(x.primitive, weight.primitive, None, options),
                )
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::brn_conv2d(x.primitive, weight.primitive, None, options))
            }
        };
        match bias {
            // The bias is added as a tensor operation, so autodiff sums its gradient.
            Some(bias) => {
                let bias = Tensor::<Self, 1>::from_primitive(TensorPrimitive::Float(bias));
                let channels = bias.dims()[0];
                (Tensor::<Self, 4>::from_primitive(TensorPrimitive::Float(output))
                    + bias.reshape([1, channels, 1, 1]))
                .into_primitive()
                .tensor()
            }
            None => output,
        }
    }
}
