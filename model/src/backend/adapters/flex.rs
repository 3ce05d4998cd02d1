//! flex's [`BrnBackend`]: the convolution and both its gradients on [`conv`] (the forward
//! fused with the concatenation before it and the ReLU and residual add after it; the backward
//! pass's three gradients with one read of the output gradient, [`conv_backward`]), the LSTM's
//! gate arithmetic and its two backward steps on [`kernels::lstm`], the ReLU masks and the
//! residual add on [`elementwise`] (burn's banded weight gradient was no faster than its own on
//! the CPU: README, "Speed on a GPU").
//!
//! Contract: the kernels take f32 tensors of the shapes they are written for (stride 1,
//! dilation 1, one group, symmetric padding; the LSTM's `[N, 4C, H, W]` gates); anything else
//! (f16, other strides, mismatched parts) goes to the [`reference`] version or burn's own
//! operation. Tensors are read in place where their storage is contiguous from offset 0
//! (copied otherwise), and results are moved into new tensors without a copy.

use std::borrow::Cow;

use burn::tensor::ops::{ConvOptions, FloatTensor, FloatTensorOps, ModuleOps};
use burn::tensor::{DType, TensorData, TensorMetadata};
use burn_flex::{Flex, FlexTensor};

use super::precision::precision;
use crate::backend::{
    conv2d_backward_by_steps, is_plain, reference, After, BrnBackend, Gradients, Wanted,
};
use kernels::layout::Shape;
use kernels::{conv, conv_backward, conv_gradient, elementwise};

impl BrnBackend for Flex {
    fn conv2d_fused(
        inputs: Vec<FloatTensor<Self>>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
        after: After<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        let Some(shape) = fused_shape(&inputs, &weight, bias.as_ref(), &options, &after) else {
            return reference::fused::<Self>(inputs, weight, bias, options, after);
        };
        convolution(&inputs, &weight, bias.as_ref(), shape, &after)
    }

    fn relu_add(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        if !same_f32s(&a, &[&b]) {
            return reference::relu_add::<Self>(a, b);
        }
        let shape = a.shape();
        let sum = elementwise::relu_add(&floats(&a), &floats(&b));
        tensor_of(sum, shape.as_slice())
    }

    fn relu_mask(grad: FloatTensor<Self>, outputs: Vec<FloatTensor<Self>>) -> FloatTensor<Self> {
        if !same_f32s(&grad, &outputs.iter().collect::<Vec<_>>()) {
            return reference::relu_mask::<Self>(grad, outputs);
        }
        let shape = grad.shape();
        let outputs: Vec<_> = outputs.iter().map(floats).collect();
        let outputs: Vec<&[f32]> = outputs.iter().map(|o| &**o).collect();
        let masked = elementwise::relu_mask(&floats(&grad), &outputs);
        tensor_of(masked, shape.as_slice())
    }

    fn channels_of(x: FloatTensor<Self>, start: usize, channels: usize) -> FloatTensor<Self> {
        let shape = x.shape();
        let [batch, c, h, w] = match shape.as_slice() {
            &[batch, c, h, w] if x.dtype() == DType::F32 && start + channels <= c => {
                [batch, c, h, w]
            }
            _ => return reference::channels_of::<Self>(x, start, channels),
        };
        let part = elementwise::channels_of(&floats(&x), [batch, c, h * w], start, channels);
        tensor(part, [batch, channels, h, w])
    }

    fn cat_channels(parts: Vec<FloatTensor<Self>>) -> FloatTensor<Self> {
        // `[N, H, W]` of every part, f32 and four-dimensional each; burn's `cat` otherwise.
        let common = |part: &FloatTensor<Self>| {
            let dims = part.shape();
            (part.dtype() == DType::F32 && dims.num_dims() == 4)
                .then(|| [dims[0], dims[2], dims[3]])
        };
        let Some([batch, h, w]) = parts.first().and_then(common) else {
            return Self::float_cat(parts, 1);
        };
        if parts.iter().any(|part| common(part) != Some([batch, h, w])) {
            return Self::float_cat(parts, 1);
        }
        let values: Vec<_> = parts.iter().map(floats).collect();
        let sources: Vec<(&[f32], usize)> = values
            .iter()
            .zip(&parts)
            .map(|(v, part)| (&v[..], part.shape()[1]))
            .collect();
        let total = sources.iter().map(|(_, c)| c).sum();
        tensor(
            elementwise::cat_channels(&sources, batch, h * w),
            [batch, total, h, w],
        )
    }

    fn lstm_gates(
        gates: FloatTensor<Self>,
        cell: Option<FloatTensor<Self>>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let Some([batch, channels, height, width]) = lstm_shape(&gates, &[cell.as_ref()]) else {
            return reference::lstm::forward_primitive::<Self>(gates, cell);
        };
        let previous = cell.as_ref().map(floats);
        let (hidden, cell) = kernels::lstm::in_one_pass(
            &floats(&gates),
            previous.as_deref(),
            batch,
            channels,
            height * width,
        );
        let shape = [batch, channels, height, width];
        (tensor(hidden, shape), tensor(cell, shape))
    }

    fn lstm_hidden_backward(
        grad_hidden: FloatTensor<Self>,
        gates: FloatTensor<Self>,
        cell: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let Some(shape) = lstm_shape(&gates, &[Some(&grad_hidden), Some(&cell)]) else {
            return reference::lstm::hidden_backward_primitive::<Self>(grad_hidden, gates, cell);
        };
        let [_, channels, height, width] = shape;
        let (grad_cell, grad_output) = kernels::lstm::hidden_backward(
            &floats(&grad_hidden),
            &floats(&gates),
            &floats(&cell),
            channels,
            height * width,
        );
        (tensor(grad_cell, shape), tensor(grad_output, shape))
    }

    fn lstm_cell_backward(
        grad_cell: FloatTensor<Self>,
        grad_output: Option<FloatTensor<Self>>,
        gates: FloatTensor<Self>,
        previous: Option<FloatTensor<Self>>,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        let others = [Some(&grad_cell), grad_output.as_ref(), previous.as_ref()];
        let Some(shape) = lstm_shape(&gates, &others) else {
            return reference::lstm::cell_backward_primitive::<Self>(
                grad_cell,
                grad_output,
                gates,
                previous,
            );
        };
        let [batch, channels, height, width] = shape;
        let grad_output = grad_output.as_ref().map(floats);
        let previous = previous.as_ref().map(floats);
        let (grad_gates, grad_previous) = kernels::lstm::cell_backward(
            &floats(&grad_cell),
            grad_output.as_deref(),
            &floats(&gates),
            previous.as_deref(),
            channels,
            height * width,
        );
        (
            tensor(grad_gates, [batch, 4 * channels, height, width]),
            grad_previous.map(|grad| tensor(grad, shape)),
        )
    }

    fn conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        masks: Vec<FloatTensor<Self>>,
        options: ConvOptions<2>,
        wanted: Wanted,
    ) -> Gradients<FloatTensor<Self>> {
        let shape = shape(&x, &weight, None, &options).filter(|&shape| {
            let [out_h, out_w] = shape.out_size();
            let dims = [shape.batch, shape.channels_out, out_h, out_w];
            conv_gradient::input_gradient_applies(shape)
                && output_grad.shape().dims::<4>() == dims
                && same_f32s(&output_grad, &masks.iter().collect::<Vec<_>>())
        });
        let Some(shape) = shape else {
            return conv2d_backward_by_steps::<Self>(
                x,
                weight,
                output_grad,
                masks,
                options,
                wanted,
            );
        };
        let masks: Vec<_> = masks.iter().map(floats).collect();
        let masks: Vec<&[f32]> = masks.iter().map(|m| &**m).collect();
        let grad = floats(&output_grad);
        let through = elementwise::Through::new(&grad, &masks);
        let (x, weight) = (floats(&x), floats(&weight));
        let gradients = conv_backward::backward(&x, &weight, through, shape, precision(), wanted);
        let [height, width] = shape.size;
        let [kernel_h, kernel_w] = shape.kernel;
        let (c_in, c_out) = (shape.channels_in, shape.channels_out);
        Gradients {
            input: gradients
                .input
                .map(|g| tensor(g, [shape.batch, c_in, height, width])),
            weight: gradients
                .weight
                .map(|g| tensor(g, [c_out, c_in, kernel_h, kernel_w])),
            bias: gradients.bias.map(|g| tensor_of(g, &[c_out])),
        }
    }

    fn conv2d_input_gradient(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match shape(&x, &weight, None, &options) {
            Some(shape) if conv_gradient::input_gradient_applies(shape) => {
                let input = conv_gradient::input_gradient(
                    &floats(&output_grad),
                    &floats(&weight),
                    shape,
                    precision(),
                );
                let [height, width] = shape.size;
                tensor(input, [shape.batch, shape.channels_in, height, width])
            }
            _ => <Self as ModuleOps<Self>>::conv2d_x_backward(x, weight, output_grad, options),
        }
    }

    fn conv2d_bias_gradient(output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if output_grad.dtype() != DType::F32 {
            return reference::bias_gradient::<Self>(output_grad);
        }
        let [batch, channels, height, width] = output_grad.shape().dims();
        let gradient =
            conv_gradient::bias_gradient(&floats(&output_grad), batch, channels, height * width);
        tensor_of(gradient, &[channels])
    }

    fn conv2d_weight_gradient(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let Some(shape) = shape(&x, &weight, None, &options) else {
            return <Self as ModuleOps<Self>>::conv2d_weight_backward(
                x,
                weight,
                output_grad,
                options,
            );
        };
        let gradient =
            conv_gradient::weight_gradient(&floats(&x), &floats(&output_grad), shape, precision());
        let [kernel_h, kernel_w] = shape.kernel;
        tensor(
            gradient,
            [shape.channels_out, shape.channels_in, kernel_h, kernel_w],
        )
    }
}

/// The convolution's sizes, where [`conv`] computes it: f32 tensors, stride 1, dilation 1,
/// one group.
fn shape(
    x: &FloatTensor<Flex>,
    weight: &FloatTensor<Flex>,
    bias: Option<&FloatTensor<Flex>>,
    options: &ConvOptions<2>,
) -> Option<Shape> {
    let f32s = x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && bias.is_none_or(|b| b.dtype() == DType::F32);
    if !f32s || !is_plain(options) {
        return None;
    }
    let [batch, channels_in, height, width] = x.shape().dims();
    let [channels_out, _, kernel_h, kernel_w] = weight.shape().dims();
    Some(Shape {
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
fn fused_shape(
    inputs: &[FloatTensor<Flex>],
    weight: &FloatTensor<Flex>,
    bias: Option<&FloatTensor<Flex>>,
    options: &ConvOptions<2>,
    after: &After<FloatTensor<Flex>>,
) -> Option<Shape> {
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
    if let After::ReluAdd(shortcut) = after {
        let [out_h, out_w] = shape.out_size();
        if shortcut.dtype() != DType::F32
            || shortcut.shape().dims() != [batch, shape.channels_out, out_h, out_w]
        {
            return None;
        }
    }
    Some(shape)
}

/// `after(conv(cat(inputs), weight) + bias)` on [`conv`], `shape` from [`shape`] or
/// [`fused_shape`].
fn convolution(
    inputs: &[FloatTensor<Flex>],
    weight: &FloatTensor<Flex>,
    bias: Option<&FloatTensor<Flex>>,
    shape: Shape,
    after: &After<FloatTensor<Flex>>,
) -> FloatTensor<Flex> {
    let parts: Vec<_> = inputs.iter().map(floats).collect();
    let parts: Vec<&[f32]> = parts.iter().map(|p| &**p).collect();
    let bias = bias.map(floats);
    let shortcut = after.as_ref().map(floats);
    let after = shortcut.as_ref().map(|s| &**s);
    let output = conv::conv2d(
        &parts,
        &floats(weight),
        bias.as_deref(),
        shape,
        after,
        precision(),
    );
    let [out_h, out_w] = shape.out_size();
    tensor(output, [shape.batch, shape.channels_out, out_h, out_w])
}

/// The tensor's values in row-major order: borrowed from its storage when it is laid out
/// so (most tensors; no copy even when the tensor is shared, as autodiff keeps inputs),
/// else copied.
fn floats(tensor: &FloatTensor<Flex>) -> Cow<'_, [f32]> {
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
fn lstm_shape(
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
    let fit =
        gates.dtype() == DType::F32 && channels4 % 4 == 0 && maps.iter().flatten().all(|t| fits(t));
    fit.then_some(shape)
}

/// Whether `first` and every one of `others` are f32 tensors of one shape.
fn same_f32s(first: &FloatTensor<Flex>, others: &[&FloatTensor<Flex>]) -> bool {
    first.dtype() == DType::F32
        && others
            .iter()
            .all(|t| t.dtype() == DType::F32 && t.shape() == first.shape())
}

/// A flex tensor holding `values` (moved, not copied).
fn tensor(values: Vec<f32>, shape: [usize; 4]) -> FloatTensor<Flex> {
    tensor_of(values, &shape)
}

/// [`tensor`] of any rank.
fn tensor_of(values: Vec<f32>, shape: &[usize]) -> FloatTensor<Flex> {
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::tensor;
    use crate::cell::conv3x3;
    use burn::tensor::{Distribution, Tensor, Tolerance};

    /// flex's fused convolution on the CPU kernel (parts never concatenated, ReLU and shortcut
    /// on each band) gives what the reference gives: `cat`, burn flex's own `conv2d`, ReLU and
    /// add as separate tensor operations, for every `After`.
    #[test]
    fn the_fused_kernel_is_burns_convolution() {
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
                reference::fused::<Flex>(inputs(), weight(), bias(), options.clone(), after());
            let data = |t| tensor::<Flex, 4>(t).into_data();
            data(fused).assert_approx_eq::<f32>(&data(separate), Tolerance::rel_abs(1e-5, 1e-5));
        }
    }

    /// flex's parallel concatenation gives burn's `cat` along the channels, value for value, for
    /// two and three parts.
    #[test]
    fn cat_channels_is_burns_cat() {
        let device = Default::default();
        let part = |c| Tensor::<Flex, 4>::random([2, c, 5, 7], Distribution::Default, &device);
        for parts in [vec![part(3), part(4)], vec![part(1), part(5), part(2)]] {
            let float = |t: &Tensor<Flex, 4>| t.clone().into_primitive().tensor();
            let ours = Flex::cat_channels(parts.iter().map(float).collect());
            let burns = Tensor::cat(parts, 1);
            assert_eq!(tensor::<Flex, 4>(ours).to_data(), burns.to_data());
        }
    }

    /// The LSTM kernels' one pass gives burn's tensor operations' result (the reference), with and without the
    /// previous cell.
    #[test]
    fn one_pass_is_the_tensor_operations() {
        let device = Default::default();
        let gates = Tensor::<Flex, 4>::random([2, 12, 5, 7], Distribution::Normal(0., 2.), &device);
        let cell = Tensor::<Flex, 4>::random([2, 3, 5, 7], Distribution::Normal(0., 1.), &device);
        for previous in [None, Some(cell)] {
            let (hidden, next) = reference::lstm::forward(gates.clone(), previous.clone());
            let values = |t: &Tensor<Flex, 4>| t.to_data().to_vec::<f32>().unwrap();
            let previous = previous.as_ref().map(values);
            let (ours_hidden, ours_next) =
                kernels::lstm::in_one_pass(&values(&gates), previous.as_deref(), 2, 3, 35);
            let as_tensor = |v: Vec<f32>| {
                Tensor::<Flex, 4>::from_data(
                    burn::tensor::TensorData::new(v, [2, 3, 5, 7]),
                    &device,
                )
            };
            let close = Tolerance::rel_abs(1e-5, 1e-6);
            as_tensor(ours_hidden)
                .to_data()
                .assert_approx_eq::<f32>(&hidden.to_data(), close);
            as_tensor(ours_next)
                .to_data()
                .assert_approx_eq::<f32>(&next.to_data(), close);
        }
    }

    /// The backward steps as tensor operations (what GPU backends run) and in one pass give
    /// the same gradients, with and without `do` and the previous cell.
    #[test]
    fn backward_steps_in_one_pass_are_the_tensor_operations() {
        let device = Default::default();
        let random = |shape: [usize; 4]| {
            Tensor::<Flex, 4>::random(shape, Distribution::Normal(0., 1.5), &device)
        };
        let values = |t: &Tensor<Flex, 4>| t.to_data().to_vec::<f32>().unwrap();
        let close = Tolerance::rel_abs(1e-5, 1e-6);
        let same = |ours: Vec<f32>, reference: &Tensor<Flex, 4>| {
            Tensor::<Flex, 4>::from_data(
                burn::tensor::TensorData::new(ours, reference.dims()),
                &device,
            )
            .to_data()
            .assert_approx_eq::<f32>(&reference.to_data(), close);
        };
        let (gates, cell, grad) = (
            random([2, 12, 5, 7]),
            random([2, 3, 5, 7]),
            random([2, 3, 5, 7]),
        );
        let (grad_cell, grad_output) =
            reference::lstm::hidden_backward(grad.clone(), gates.clone(), cell.clone());
        let (ours_cell, ours_output) =
            kernels::lstm::hidden_backward(&values(&grad), &values(&gates), &values(&cell), 3, 35);
        same(ours_cell, &grad_cell);
        same(ours_output, &grad_output);
        for (output, previous) in [
            (None, None),
            (Some(grad_output), Some(random([2, 3, 5, 7]))),
        ] {
            let (grad_gates, grad_previous) = reference::lstm::cell_backward(
                grad_cell.clone(),
                output.clone(),
                gates.clone(),
                previous.clone(),
            );
            let (output, previous) = (output.as_ref().map(values), previous.as_ref().map(values));
            let (ours_gates, ours_previous) = kernels::lstm::cell_backward(
                &values(&grad_cell),
                output.as_deref(),
                &values(&gates),
                previous.as_deref(),
                3,
                35,
            );
            same(ours_gates, &grad_gates);
            assert_eq!(ours_previous.is_some(), grad_previous.is_some());
            if let (Some(ours), Some(reference)) = (ours_previous, grad_previous) {
                same(ours, &reference);
            }
        }
    }
}
