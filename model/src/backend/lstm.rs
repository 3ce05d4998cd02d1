//! The convolutional LSTM's gate arithmetic (the paper's Eq. 6/7 after its one gate
//! convolution): `i, f, g, o = split(gates)`, `c' = σ(f)·c + σ(i)·tanh(g)` (`σ(i)·tanh(g)` at the
//! first stage, without `c`), `h' = σ(o)·tanh(c')`. As tensor operations (every backend, and the
//! autodiff backend, which records them), and as one pass over memory for the CPU.

use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

/// The gate arithmetic as burn tensor operations.
///
/// # Shapes
/// - `gates`: `[N, 4C, H, W]` (`i; f; g; o`), `cell`: `[N, C, H, W]`
/// - returns `(hidden, cell)`, `[N, C, H, W]` each
pub fn by_tensor_ops<B: Backend>(
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

/// [`by_tensor_ops`] on primitives, as the backend trait passes them.
///
/// # Shapes
/// - as [`by_tensor_ops`]
pub fn by_tensor_ops_primitive<B: Backend>(
    gates: FloatTensor<B>,
    cell: Option<FloatTensor<B>>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let float = |t| Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(t));
    let (hidden, cell) = by_tensor_ops(float(gates), cell.map(float));
    (
        hidden.into_primitive().tensor(),
        cell.into_primitive().tensor(),
    )
}

fn logistic(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The gate arithmetic in one pass over `gates` (and `cell`), plane by plane, the planes in
/// parallel with the `parallel` feature.
///
/// # Shapes
/// - `gates`: `[N, 4C, plane]` row-major, `cell`: `[N, C, plane]`
/// - returns `(hidden, cell)`, `[N, C, plane]` each
pub fn in_one_pass(
    gates: &[f32],
    cell: Option<&[f32]>,
    batch: usize,
    channels: usize,
    plane: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut hidden = vec![0f32; batch * channels * plane];
    let mut cell_out = vec![0f32; batch * channels * plane];
    let step = |(q, (hidden, cell_out)): (usize, (&mut [f32], &mut [f32]))| {
        let (n, c) = (q / channels, q % channels);
        let gate = |k: usize| &gates[((n * 4 + k) * channels + c) * plane..][..plane];
        let (input, forget, candidate, output) = (gate(0), gate(1), gate(2), gate(3));
        let previous = cell.map(|cell| &cell[q * plane..][..plane]);
        for p in 0..plane {
            let update = logistic(input[p]) * candidate[p].tanh();
            let next = match previous {
                Some(previous) => logistic(forget[p]) * previous[p] + update,
                None => update,
            };
            cell_out[p] = next;
            hidden[p] = logistic(output[p]) * next.tanh();
        }
    };
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        hidden
            .par_chunks_mut(plane)
            .zip(cell_out.par_chunks_mut(plane))
            .enumerate()
            .for_each(step);
    }
    #[cfg(not(feature = "parallel"))]
    hidden
        .chunks_mut(plane)
        .zip(cell_out.chunks_mut(plane))
        .enumerate()
        .for_each(step);
    (hidden, cell_out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};
    use burn_flex::Flex;

    /// One pass gives burn's tensor operations' result (the reference), with and without the
    /// previous cell.
    #[test]
    fn one_pass_is_the_tensor_operations() {
        let device = Default::default();
        let gates = Tensor::<Flex, 4>::random([2, 12, 5, 7], Distribution::Normal(0., 2.), &device);
        let cell = Tensor::<Flex, 4>::random([2, 3, 5, 7], Distribution::Normal(0., 1.), &device);
        for previous in [None, Some(cell)] {
            let (hidden, next) = by_tensor_ops(gates.clone(), previous.clone());
            let values = |t: &Tensor<Flex, 4>| t.to_data().to_vec::<f32>().unwrap();
            let previous = previous.as_ref().map(values);
            let (ours_hidden, ours_next) =
                in_one_pass(&values(&gates), previous.as_deref(), 2, 3, 35);
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
}
