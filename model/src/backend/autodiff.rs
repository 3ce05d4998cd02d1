//! The autodiff backend's BRN convolution: the inner backend's fused forward
//! ([`BrnBackend::conv2d_fused`]: the bias, and the ReLU that follows in the model, in the
//! same pass), and one backward node: the ReLU's mask, then
//! [`BrnBackend::conv2d_input_gradient`], [`BrnBackend::conv2d_weight_gradient`] and
//! [`BrnBackend::conv2d_bias_gradient`]. A ResBlock's residual add and a concatenation before
//! the convolution stay burn's recorded operations.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::Autodiff;
use burn::tensor::ops::{ActivationOps, ConvOptions, FloatTensor, FloatTensorOps};

use super::{After, BrnBackend};

/// `relu?(conv(x, weight) + bias)` as an autodiff node with parents `[x, weight(, bias)]`.
#[derive(Debug)]
struct Convolution;

/// What the backward pass needs: the input's and the weight's checkpoints, the options, and
/// the output where a ReLU was applied (its mask).
type State<B> = (NodeId, NodeId, ConvOptions<2>, Option<FloatTensor<B>>);

impl<B: BrnBackend, const N: usize> Backward<B, N> for Convolution {
    type State = State<B>;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let output_grad = grads.consume::<B>(&ops.node);
        let (x, weight, options, relu_output) = ops.state;
        // Through the ReLU: zero where it cut.
        let output_grad = match relu_output {
            Some(output) => B::relu_backward(output, output_grad),
            None => output_grad,
        };
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight);
        if let Some(Some(node)) = ops.parents.get(2) {
            grads.register::<B>(node.id, B::conv2d_bias_gradient(output_grad.clone()));
        }
        if let Some(node) = &ops.parents[0] {
            let grad = B::conv2d_input_gradient(
                x.clone(),
                weight.clone(),
                output_grad.clone(),
                options.clone(),
            );
            grads.register::<B>(node.id, grad);
        }
        if let Some(node) = &ops.parents[1] {
            let grad = B::conv2d_weight_gradient(x, weight, output_grad, options);
            grads.register::<B>(node.id, grad);
        }
    }
}

/// Record `relu?(conv(x, weight) + bias)` with parents `[x, weight(, bias)]` (`$nodes`) and
/// compute it with `$forward(options)` (a macro: burn does not name the nodes' type).
macro_rules! record {
    ($backend:ty, $strategy:ty, $nodes:expr, $x:expr, $weight:expr, $options:expr, $relu:expr, $forward:expr) => {
        match Convolution
            .prepare::<$strategy>($nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint($x);
                let weight_state = prep.checkpoint($weight);
                let output: FloatTensor<$backend> = $forward($options.clone());
                let mask = $relu.then(|| output.clone());
                prep.finish((x_state, weight_state, $options, mask), output)
            }
            OpsKind::UnTracked(prep) => prep.finish($forward($options)),
        }
    };
}

impl<B: BrnBackend, C: CheckpointStrategy> BrnBackend for Autodiff<B, C> {
    fn brn_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_fused(vec![x], weight, bias, options, After::Nothing)
    }

    fn conv2d_fused(
        inputs: Vec<FloatTensor<Self>>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
        after: After<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        let x = super::concatenated::<Self>(inputs);
        let (relu, shortcut) = match after {
            After::Nothing => (false, None),
            After::Relu => (true, None),
            After::ReluAdd(shortcut) => (true, Some(shortcut)),
        };
        let after = if relu { After::Relu } else { After::Nothing };
        let forward = |bias: Option<FloatTensor<B>>| {
            let (x, weight) = (x.primitive.clone(), weight.primitive.clone());
            move |options| B::conv2d_fused(vec![x], weight, bias, options, after)
        };
        let output = match bias {
            Some(bias) => {
                let nodes = [x.node.clone(), weight.node.clone(), bias.node.clone()];
                let forward = forward(Some(bias.primitive));
                record!(B, C, nodes, &x, &weight, options, relu, forward)
            }
            None => {
                let nodes = [x.node.clone(), weight.node.clone()];
                record!(B, C, nodes, &x, &weight, options, relu, forward(None))
            }
        };
        match shortcut {
            // relu(relu(y) + shortcut): the add and the outer ReLU as recorded operations.
            Some(shortcut) => Self::relu(Self::float_add(output, shortcut)),
            None => output,
        }
    }
}
