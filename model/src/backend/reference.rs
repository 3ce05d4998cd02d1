//! The reference versions of [`BrnBackend`]'s operations, as burn's tensor operations: what a
//! backend without kernels of its own runs (the trait's defaults), what the autodiff backend
//! falls back to, and what the kernels' tests compare with. Each is the textbook sequence of
//! operations (a concatenation, burn's `conv2d`, ReLU, add, sums), nothing fused.

use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::Slice;

use super::After;
#[cfg(doc)]
use super::BrnBackend;

/// [`BrnBackend::conv2d_fused`] as separate operations: `cat`, burn's convolution, ReLU, add.
///
/// # Shapes
/// - as [`BrnBackend::conv2d_fused`]
pub fn fused<B: Backend>(
    inputs: Vec<FloatTensor<B>>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    options: ConvOptions<2>,
    after: After<FloatTensor<B>>,
) -> FloatTensor<B> {
    let y = B::conv2d(concatenated::<B>(inputs), weight, bias, options);
    self::after::<B>(y, after)
}

/// The inputs concatenated along the channels (one input as it is).
///
/// # Shapes
/// - `inputs`: `[N, C_i, H, W]` each → `[N, Σ C_i, H, W]`
pub fn concatenated<B: Backend>(mut inputs: Vec<FloatTensor<B>>) -> FloatTensor<B> {
    match inputs.len() {
        1 => inputs.pop().expect("one input"),
        _ => B::float_cat(inputs, 1),
    }
}

/// [`BrnBackend::channels_of`](super::BrnBackend::channels_of) as burn's slice.
///
/// # Shapes
/// - `x`: `[N, C, H, W]` → `[N, channels, H, W]`
pub fn channels_of<B: Backend>(x: FloatTensor<B>, start: usize, channels: usize) -> FloatTensor<B> {
    let slices = [
        Slice::full(),
        Slice::new(start as isize, Some((start + channels) as isize), 1),
        Slice::full(),
        Slice::full(),
    ];
    B::float_slice(x, &slices)
}

/// `after` applied to a convolution's output `y` as burn's ReLU and add.
///
/// # Shapes
/// - `y` and `after`'s shortcut: the same shape → that shape
pub fn after<B: Backend>(y: FloatTensor<B>, after: After<FloatTensor<B>>) -> FloatTensor<B> {
    match after {
        After::Nothing => y,
        After::Relu => B::relu(y),
        After::ReluAdd(shortcut) => B::relu(B::float_add(B::relu(y), shortcut)),
    }
}

/// [`BrnBackend::relu_add`] as burn's add and ReLU.
///
/// # Shapes
/// - `a`, `b`: the same shape → that shape
pub fn relu_add<B: Backend>(a: FloatTensor<B>, b: FloatTensor<B>) -> FloatTensor<B> {
    B::relu(B::float_add(a, b))
}

/// [`BrnBackend::relu_mask`] as burn's `relu_backward`, one output after another.
///
/// # Shapes
/// - `grad`, each of `outputs`: the same shape → that shape
pub fn relu_mask<B: Backend>(grad: FloatTensor<B>, outputs: Vec<FloatTensor<B>>) -> FloatTensor<B> {
    outputs
        .into_iter()
        .fold(grad, |grad, output| B::relu_backward(output, grad))
}

/// [`BrnBackend::conv2d_bias_gradient`] as burn's sums.
///
/// # Shapes
/// - `output_grad`: `[N, C_out, H_out, W_out]` → `[C_out]`
pub fn bias_gradient<B: Backend>(output_grad: FloatTensor<B>) -> FloatTensor<B> {
    use burn::tensor::TensorMetadata;
    let channels = output_grad.shape().dims::<4>()[1];
    let summed = B::float_sum_dim(B::float_sum_dim(B::float_sum_dim(output_grad, 0), 2), 3);
    B::float_reshape(summed, [channels].into())
}

/// The convolutional LSTM's gate arithmetic after its gate convolution (the paper's Eq. 6/7),
/// `c' = σ(f)·c + σ(i)·tanh(g)`, `h' = σ(o)·tanh(c')`, and its two backward steps, as tensor
/// operations on `Tensor`s and on the primitives the trait passes.
pub mod lstm {
    use burn::tensor::activation::{sigmoid, tanh};
    use burn::tensor::backend::Backend;
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::Tensor;

    use crate::backend::{primitive, tensor};

    /// The gate arithmetic, `c' = σ(f)·c + σ(i)·tanh(g)` and `h' = σ(o)·tanh(c')`.
    ///
    /// # Shapes
    /// - `gates`: `[N, 4C, H, W]` (`i; f; g; o`), `cell`: `[N, C, H, W]`
    /// - returns `(hidden, cell)`, `[N, C, H, W]` each
    pub fn forward<B: Backend>(
        gates: Tensor<B, 4>,
        cell: Option<Tensor<B, 4>>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [input, forget, candidate, output]: [Tensor<B, 4>; 4] = gates
            .chunk(4, 1)
            .try_into()
            .expect("the gate convolution has 4 * channels outputs");
        let update = sigmoid(input) * tanh(candidate);
        let cell = match cell {
            Some(cell) => sigmoid(forget) * cell + update,
            None => update,
        };
        (sigmoid(output) * tanh(cell.clone()), cell)
    }

    /// [`forward`] on primitives, as the backend trait passes them.
    ///
    /// # Shapes
    /// - as [`forward`]
    pub fn forward_primitive<B: Backend>(
        gates: FloatTensor<B>,
        cell: Option<FloatTensor<B>>,
    ) -> (FloatTensor<B>, FloatTensor<B>) {
        let (hidden, cell) = forward(tensor::<B, 4>(gates), cell.map(tensor));
        (primitive(hidden), primitive(cell))
    }

    /// [`hidden_backward`] on primitives, as the backend trait passes them.
    ///
    /// # Shapes
    /// - as [`hidden_backward`]
    pub fn hidden_backward_primitive<B: Backend>(
        grad_hidden: FloatTensor<B>,
        gates: FloatTensor<B>,
        cell: FloatTensor<B>,
    ) -> (FloatTensor<B>, FloatTensor<B>) {
        let (grad_cell, grad_output) =
            hidden_backward(tensor::<B, 4>(grad_hidden), tensor(gates), tensor(cell));
        (primitive(grad_cell), primitive(grad_output))
    }

    /// [`cell_backward`] on primitives, as the backend trait passes them.
    ///
    /// # Shapes
    /// - as [`cell_backward`]
    pub fn cell_backward_primitive<B: Backend>(
        grad_cell: FloatTensor<B>,
        grad_output: Option<FloatTensor<B>>,
        gates: FloatTensor<B>,
        previous: Option<FloatTensor<B>>,
    ) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
        let (grad_gates, grad_previous) = cell_backward(
            tensor::<B, 4>(grad_cell),
            grad_output.map(tensor),
            tensor(gates),
            previous.map(tensor),
        );
        (primitive(grad_gates), grad_previous.map(primitive))
    }

    /// The backward step through `h' = σ(o)·tanh(c')`: `(dc', do)`.
    ///
    /// # Shapes
    /// - `grad_hidden`, `cell` (`c'`): `[N, C, H, W]`, `gates`: `[N, 4C, H, W]`
    /// - returns `[N, C, H, W]` each
    pub fn hidden_backward<B: Backend>(
        grad_hidden: Tensor<B, 4>,
        gates: Tensor<B, 4>,
        cell: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let channels = cell.dims()[1];
        let output = sigmoid(gates.narrow(1, 3 * channels, channels));
        let cell = tanh(cell);
        let grad_cell =
            grad_hidden.clone() * output.clone() * (cell.clone().powi_scalar(2).neg() + 1.0);
        let grad_output = grad_hidden * cell * output.clone() * (output.neg() + 1.0);
        (grad_cell, grad_output)
    }

    /// The backward step through `c' = σ(f)·c + σ(i)·tanh(g)`: the
    /// gates' gradient (`do` from the step through `h'`, zero without it) and `dc` (with `c`).
    ///
    /// # Shapes
    /// - `grad_cell` (`dc'`), `grad_output`, `previous` (`c`): `[N, C, H, W]`, `gates`:
    ///   `[N, 4C, H, W]`
    /// - returns `[N, 4C, H, W]` and `[N, C, H, W]`
    pub fn cell_backward<B: Backend>(
        grad_cell: Tensor<B, 4>,
        grad_output: Option<Tensor<B, 4>>,
        gates: Tensor<B, 4>,
        previous: Option<Tensor<B, 4>>,
    ) -> (Tensor<B, 4>, Option<Tensor<B, 4>>) {
        let [input, forget, candidate, _]: [Tensor<B, 4>; 4] = gates
            .chunk(4, 1)
            .try_into()
            .expect("the gate convolution has 4 * channels outputs");
        let (input, forget, candidate) = (sigmoid(input), sigmoid(forget), tanh(candidate));
        let derivative = |s: Tensor<B, 4>| s.clone() * (s.neg() + 1.0);
        let grad_input = grad_cell.clone() * candidate.clone() * derivative(input.clone());
        let grad_forget = match &previous {
            Some(previous) => grad_cell.clone() * previous.clone() * derivative(forget.clone()),
            None => grad_cell.zeros_like(),
        };
        let grad_candidate = grad_cell.clone() * input * (candidate.powi_scalar(2).neg() + 1.0);
        let grad_output = grad_output.unwrap_or_else(|| grad_cell.zeros_like());
        let grad_previous = previous.map(|_| grad_cell * forget);
        (
            Tensor::cat(
                vec![grad_input, grad_forget, grad_candidate, grad_output],
                1,
            ),
            grad_previous,
        )
    }
}
