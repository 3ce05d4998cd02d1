//! The recurrent layers of a branch: a convolutional LSTM and a convolutional GRU.
//!
//! Each computes all of its gates with one convolution over the concatenated inputs
//! `cat[features, own hidden state(, the other branch's hidden state)]` and splits them
//! afterwards; the authors' separate gate convolutions are fused into it when loading.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::backend::{conv2d_cat, primitive, tensor, BrnBackend, Part};

/// A 3x3 convolution with stride 1 and padding 1, the only kind the BRN family uses.
pub fn conv3x3<B: Backend>(
    channels_in: usize,
    channels_out: usize,
    device: &B::Device,
) -> Conv2d<B> {
    Conv2dConfig::new([channels_in, channels_out], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

/// The recurrent state of one branch: hidden state `h` and, for an LSTM, the cell `c`.
#[derive(Clone, Debug)]
pub struct CellState<B: Backend> {
    /// `h`, `[N, C, H, W]`.
    pub hidden: Tensor<B, 4>,
    /// `c`, `[N, C, H, W]` (LSTM only).
    pub cell: Option<Tensor<B, 4>>,
}

/// The hidden state `h` as a convolution's input part: the tensor, or `channels` zeros before
/// the first stage (`None`: every stage loop starts from the zero state, whose products the
/// convolutions skip).
pub fn hidden_part<B: Backend>(state: Option<&CellState<B>>, channels: usize) -> Part<B> {
    match state {
        Some(state) => Part::Tensor(state.hidden.clone()),
        None => Part::Zeros(channels),
    }
}

/// The recurrent layer's inputs, to be concatenated along the channels.
fn parts<B: Backend>(first: Part<B>, second: Part<B>, other: Option<Part<B>>) -> Vec<Part<B>> {
    let mut parts = vec![first, second];
    parts.extend(other);
    parts
}

/// Convolutional LSTM, Eq. (6)/(7) of the paper, with the gates i, f, g, o in one convolution.
#[derive(Module, Debug)]
pub struct ConvLstm<B: Backend> {
    /// `[i; f; g; o]` gates: `inputs -> 4 * channels`.
    pub gates: Conv2d<B>,
}

impl<B: Backend> ConvLstm<B> {
    /// A cell over `inputs` concatenated channels with `channels` hidden channels.
    pub fn new(inputs: usize, channels: usize, device: &B::Device) -> Self {
        Self {
            gates: conv3x3(inputs, 4 * channels, device),
        }
    }
}

impl<B: BrnBackend> ConvLstm<B> {
    /// One step of the cell, from `state` (`None`: the zero state before the first stage).
    ///
    /// # Shapes
    /// - `features`, `state.hidden`, `state.cell`, `other`: `[N, C, H, W]`
    /// - returns the new state, `[N, C, H, W]` each
    pub fn forward(
        &self,
        features: Tensor<B, 4>,
        state: Option<CellState<B>>,
        other: Option<Part<B>>,
    ) -> CellState<B> {
        let channels = self.gates.weight.dims()[0] / 4;
        let hidden = hidden_part(state.as_ref(), channels);
        let gates = conv2d_cat(&self.gates, parts(Part::Tensor(features), hidden, other));
        let cell = state.and_then(|state| state.cell);
        let (hidden, cell) = B::lstm_gates(primitive(gates), cell.map(primitive));
        CellState {
            hidden: tensor(hidden),
            cell: Some(tensor(cell)),
        }
    }
}

/// Convolutional GRU as in the authors' SRN-GRU: update gate `z`, reset gate `b`, candidate `g`.
#[derive(Module, Debug)]
pub struct ConvGru<B: Backend> {
    /// `[z; b]` gates over `cat[features, h(, other h)]`: `inputs -> 2 * channels`.
    pub update_reset: Conv2d<B>,
    /// Candidate over `cat[b * h, features(, other h)]`: `inputs -> channels`.
    pub candidate: Conv2d<B>,
}

impl<B: Backend> ConvGru<B> {
    /// A cell over `inputs` concatenated channels with `channels` hidden channels.
    pub fn new(inputs: usize, channels: usize, device: &B::Device) -> Self {
        Self {
            update_reset: conv3x3(inputs, 2 * channels, device),
            candidate: conv3x3(inputs, channels, device),
        }
    }
}

impl<B: BrnBackend> ConvGru<B> {
    /// One step of the cell, from `state` (`None`: the zero state before the first stage).
    ///
    /// # Shapes
    /// - `features`, `state.hidden`, `other`: `[N, C, H, W]`
    /// - returns the new state (no `cell`), `[N, C, H, W]`
    pub fn forward(
        &self,
        features: Tensor<B, 4>,
        state: Option<CellState<B>>,
        other: Option<Part<B>>,
    ) -> CellState<B> {
        let channels = self.candidate.weight.dims()[0];
        let gates = conv2d_cat(
            &self.update_reset,
            parts(
                Part::Tensor(features.clone()),
                hidden_part(state.as_ref(), channels),
                other.clone(),
            ),
        );
        let [update, reset]: [Tensor<B, 4>; 2] = gates
            .chunk(2, 1)
            .try_into()
            .expect("the gate convolution has 2 * channels outputs");
        let update = sigmoid(update);
        // From the zero state, `reset * h` is zero and so is `h - update * h`.
        let reset_hidden = match &state {
            Some(state) => Part::Tensor(sigmoid(reset) * state.hidden.clone()),
            None => Part::Zeros(channels),
        };
        let candidate = tanh(conv2d_cat(
            &self.candidate,
            parts(reset_hidden, Part::Tensor(features), other),
        ));
        let hidden = match state {
            Some(state) => {
                state.hidden.clone() - update.clone() * state.hidden + update * candidate
            }
            None => update * candidate,
        };
        CellState { hidden, cell: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};
    use burn_flex::Flex;

    type B = Flex;

    /// Each cell from the zero state given as `None` (its products with the zeros skipped)
    /// gives what it gives from a state of zeros made as tensors, the definition: the new
    /// hidden state and cell, with the other branch's state zeros or not.
    #[test]
    fn the_skipped_zero_state_is_a_state_of_zeros() {
        let device = Default::default();
        let (n, c, h, w) = (2, 4, 9, 7);
        let random = || Tensor::<B, 4>::random([n, c, h, w], Distribution::Normal(0., 1.), &device);
        let zeros = || Tensor::<B, 4>::zeros([n, c, h, w], &device);
        let (features, other) = (random(), random());
        let lstm = ConvLstm::<B>::new(3 * c, c, &device);
        let gru = ConvGru::<B>::new(3 * c, c, &device);
        let made = || CellState {
            hidden: zeros(),
            cell: Some(zeros()),
        };
        for other_zero in [true, false] {
            let (skipped_other, made_other) = if other_zero {
                (Part::Zeros(c), Part::Tensor(zeros()))
            } else {
                (Part::Tensor(other.clone()), Part::Tensor(other.clone()))
            };
            let same = |a: Tensor<B, 4>, b: Tensor<B, 4>| {
                a.to_data()
                    .assert_approx_eq::<f32>(&b.to_data(), Tolerance::rel_abs(1e-6, 1e-6))
            };
            let skipped = lstm.forward(features.clone(), None, Some(skipped_other.clone()));
            let defined = lstm.forward(features.clone(), Some(made()), Some(made_other.clone()));
            same(skipped.hidden, defined.hidden);
            same(skipped.cell.unwrap(), defined.cell.unwrap());
            let skipped = gru.forward(features.clone(), None, Some(skipped_other));
            let defined = gru.forward(features.clone(), Some(made()), Some(made_other));
            same(skipped.hidden, defined.hidden);
        }
    }
}
