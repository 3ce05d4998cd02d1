//! The autodiff backend's BRN convolution as one node: forward, the inner backend's fused
//! convolution ([`BrnBackend::conv2d_fused`]: the bias, and the ReLU that follows in the
//! model, in the same pass), then a ResBlock's residual add and ReLU
//! ([`BrnBackend::relu_add`]); backward, the shortcut's gradient through its ReLU
//! ([`BrnBackend::relu_mask`]), then the convolution's three gradients from the gradient
//! through the ReLUs, the mask not yet applied ([`BrnBackend::conv2d_backward`], which flex
//! computes with one read of the gradient). A concatenation before the convolution is
//! `autodiff_cat`'s node.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::Autodiff;
use burn::tensor::ops::{ConvOptions, FloatTensor};

use crate::backend::{After, BrnBackend, Wanted};

/// `after(conv(x, weight) + bias)` as an autodiff node with parents `[x, weight(, bias)(,
/// shortcut)]`.
#[derive(Debug)]
struct Convolution;

/// What the backward pass needs: the input's and the weight's checkpoints, the options, the
/// output of the convolution's own ReLU (the gradient passes where it is positive: none or
/// `[relu(y)]`), the output where a shortcut was added (the gradient of the shortcut, and of
/// the convolution, passes where it is positive too), and whether `parents[2]` is the bias.
type State<B> = (
    NodeId,
    NodeId,
    ConvOptions<2>,
    Vec<FloatTensor<B>>,
    Option<FloatTensor<B>>,
    bool,
);

impl<B: BrnBackend, const N: usize> Backward<B, N> for Convolution {
    type State = State<B>;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let mut output_grad = grads.consume::<B>(&ops.node);
        let (x, weight, options, mut masks, added, has_bias) = ops.state;
        let shortcut_at = 2 + usize::from(has_bias);
        // Where a shortcut was added, its gradient passes where the output is positive; the
        // convolution's where relu(y) is too: the shortcut's through that one ReLU more.
        if let Some(output) = added {
            match ops.parents.get(shortcut_at) {
                Some(Some(node)) => {
                    output_grad = B::relu_mask(output_grad, vec![output]);
                    grads.register::<B>(node.id, output_grad.clone());
                }
                _ => masks.push(output),
            }
        }
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight);
        let bias = ops
            .parents
            .get(2)
            .filter(|_| has_bias)
            .and_then(Option::as_ref);
        let wanted = Wanted {
            input: ops.parents[0].is_some(),
            weight: ops.parents[1].is_some(),
            bias: bias.is_some(),
        };
        let gradients = B::conv2d_backward(x, weight, output_grad, masks, options, wanted);
        let nodes = [&ops.parents[0], &ops.parents[1]];
        let pairs = [
            (nodes[0].as_ref(), gradients.input),
            (nodes[1].as_ref(), gradients.weight),
        ];
        for (node, gradient) in pairs.into_iter().chain([(bias, gradients.bias)]) {
            if let (Some(node), Some(gradient)) = (node, gradient) {
                grads.register::<B>(node.id, gradient);
            }
        }
    }
}

/// What the node's forward pass computes: the output, and the masks and added output of
/// [`State`] (empty when not tracked).
type Forward<B> = (FloatTensor<B>, Vec<FloatTensor<B>>, Option<FloatTensor<B>>);

/// Record the node with parents `$nodes` (`[x, weight(, bias)(, shortcut)]`) and compute it
/// with `$forward(options, tracked)` (a macro: burn does not name the nodes' type).
macro_rules! record {
    ($strategy:ty, $nodes:expr, $x:expr, $weight:expr, $options:expr, $has_bias:expr, $forward:expr) => {
        match Convolution
            .prepare::<$strategy>($nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint($x);
                let weight_state = prep.checkpoint($weight);
                let (output, masks, added) = $forward($options.clone(), true);
                let state = (x_state, weight_state, $options, masks, added, $has_bias);
                prep.finish(state, output)
            }
            OpsKind::UnTracked(prep) => prep.finish($forward($options, false).0),
        }
    };
}

impl<B: BrnBackend, C: CheckpointStrategy> BrnBackend for Autodiff<B, C> {
    fn lstm_gates(
        gates: FloatTensor<Self>,
        cell: Option<FloatTensor<Self>>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        super::autodiff_lstm::lstm_gates::<B, C>(gates, cell)
    }

    fn conv2d_fused(
        inputs: Vec<FloatTensor<Self>>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
        after: After<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        let x = super::autodiff_cat::concatenate::<B, C>(inputs);
        let has_bias = bias.is_some();
        let (x_primitive, weight_primitive) = (x.primitive.clone(), weight.primitive.clone());
        let bias_primitive = bias.as_ref().map(|bias| bias.primitive.clone());
        let after_primitive = after.clone().map(|shortcut| shortcut.primitive);
        // Untracked: the backend's fused pass. Tracked: the convolution and its ReLU, then
        // `relu_add` for a shortcut, keeping what the backward pass masks with.
        let forward = move |options: ConvOptions<2>, tracked: bool| -> Forward<B> {
            let (x, weight, bias) = (vec![x_primitive], weight_primitive, bias_primitive);
            if !tracked {
                let output = B::conv2d_fused(x, weight, bias, options, after_primitive);
                return (output, vec![], None);
            }
            match after_primitive {
                After::Nothing => {
                    let y = B::conv2d_fused(x, weight, bias, options, After::Nothing);
                    (y, vec![], None)
                }
                After::Relu => {
                    let y = B::conv2d_fused(x, weight, bias, options, After::Relu);
                    (y.clone(), vec![y], None)
                }
                After::ReluAdd(shortcut) => {
                    let y = B::conv2d_fused(x, weight, bias, options, After::Relu);
                    let output = B::relu_add(y.clone(), shortcut);
                    (output.clone(), vec![y], Some(output))
                }
            }
        };
        let (x_node, weight_node) = (x.node.clone(), weight.node.clone());
        match (bias, after) {
            (Some(bias), After::ReluAdd(shortcut)) => {
                let nodes = [
                    x_node,
                    weight_node,
                    bias.node.clone(),
                    shortcut.node.clone(),
                ];
                record!(C, nodes, &x, &weight, options, has_bias, forward)
            }
            (Some(bias), _) => {
                let nodes = [x_node, weight_node, bias.node.clone()];
                record!(C, nodes, &x, &weight, options, has_bias, forward)
            }
            (None, After::ReluAdd(shortcut)) => {
                let nodes = [x_node, weight_node, shortcut.node.clone()];
                record!(C, nodes, &x, &weight, options, has_bias, forward)
            }
            (None, _) => {
                let nodes = [x_node, weight_node];
                record!(C, nodes, &x, &weight, options, has_bias, forward)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::{conv2d, conv2d_cat, conv2d_relu, conv2d_relu_add, Part};
    use crate::cell::conv3x3;
    use burn::backend::Autodiff;
    use burn::tensor::{Distribution, Tensor, Tolerance};
    use burn_flex::Flex;

    type Ad = Autodiff<Flex>;

    /// Through the autodiff backend, `conv2d` and its fused forms give the output and the
    /// gradients (input parts, weight, bias, shortcut) that burn's own `Conv2d::forward`,
    /// `cat`, `relu` and `+` give (the reference), for the model's 3x3 convolution at a size
    /// where the CPU kernels cut each image into several bands; with a shortcut that needs a
    /// gradient and one that does not.
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
        // A shortcut that needs no gradient (its mask joins the convolution's own; burn's
        // `detach` keeps a tensor's need of a gradient, so a fresh tensor).
        let constant =
            Tensor::<Ad, 4>::random([2, 4, 40, 30], Distribution::Normal(0., 1.), &device);
        let forms: [(&str, Form, Form); 5] = [
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
                "conv2d_relu_add, a shortcut without gradient",
                Box::new(|| conv2d_relu_add(&conv, whole(), constant.clone())),
                Box::new(|| relu(relu(conv.forward(whole())) + constant.clone())),
            ),
            (
                "conv2d_cat",
                Box::new(|| {
                    conv2d_cat(
                        &conv,
                        vec![Part::Tensor(x.clone()), Part::Tensor(y.clone())],
                    )
                }),
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
                // A weight gradient sums 2,400 products of unit size: two f32 sums in another
                // order differ by about 1e-4 where the terms cancel, so the absolute tolerance
                // scales with the tensor's largest value (a wrong tap or band is off by
                // several units).
                let largest = burns.clone().abs().max().into_scalar().max(1.0);
                ours.to_data().assert_approx_eq::<f32>(
                    &burns.to_data(),
                    Tolerance::rel_abs(1e-4, 1e-5 * largest),
                );
            }
        }
    }

    /// A concatenation with parts of zeros (the recurrent state before the first stage), whose
    /// products `conv2d_cat` skips, gives the output and the gradients (the other parts',
    /// the whole kernel's, zero where it meets the zeros, and the bias's) that burn's
    /// convolution over the concatenation with the zeros made gives: zeros first, between
    /// and last, and two adjacent.
    #[test]
    fn zero_parts_are_skipped_with_burns_output_and_gradients() {
        let device = Default::default();
        let input = |c| {
            Tensor::<Ad, 4>::random([2, c, 40, 30], Distribution::Normal(0., 1.), &device)
                .require_grad()
        };
        let zeros = |c| Tensor::<Ad, 4>::zeros([2, c, 40, 30], &device);
        let weights =
            Tensor::<Ad, 4>::random([2, 4, 40, 30], Distribution::Normal(0., 1.), &device);
        // Each layout: the parts' channels, `None` where the part is zeros.
        for layout in [
            vec![Some(2), None],
            vec![None, Some(3)],
            vec![Some(2), None, Some(1)],
            vec![None, None, Some(3)],
        ] {
            let total: usize = layout.iter().map(|c| c.unwrap_or(2)).sum();
            let conv = conv3x3::<Ad>(total, 4, &device);
            let parts: Vec<Option<Tensor<Ad, 4>>> = layout.iter().map(|c| c.map(input)).collect();
            let ours = conv2d_cat(
                &conv,
                parts
                    .iter()
                    .map(|p| p.clone().map_or(Part::Zeros(2), Part::Tensor))
                    .collect(),
            );
            let whole = parts
                .iter()
                .map(|p| p.clone().unwrap_or_else(|| zeros(2)))
                .collect();
            let burns = conv.forward(Tensor::cat(whole, 1));
            ours.to_data()
                .assert_approx_eq::<f32>(&burns.to_data(), Tolerance::rel_abs(1e-5, 1e-5));
            let gradients = |output: Tensor<Ad, 4>| {
                let grads = (output * weights.clone()).sum().backward();
                let mut all: Vec<Tensor<Flex, 4>> = parts
                    .iter()
                    .flatten()
                    .map(|p| p.grad(&grads).unwrap())
                    .collect();
                all.push(conv.weight.val().grad(&grads).unwrap());
                let bias = conv.bias.as_ref().unwrap().val().grad(&grads).unwrap();
                all.push(bias.reshape([1, 1, 1, 4]));
                all
            };
            for (ours, burns) in gradients(ours).iter().zip(&gradients(burns)) {
                let largest = burns.clone().abs().max().into_scalar().max(1.0);
                ours.to_data().assert_approx_eq::<f32>(
                    &burns.to_data(),
                    Tolerance::rel_abs(1e-4, 1e-5 * largest),
                );
            }
        }
    }
}
