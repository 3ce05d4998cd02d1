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

use crate::backend::{conv2d_cat, primitive, tensor, BrnBackend};

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

impl<B: Backend> CellState<B> {
    /// All-zero state, as every stage loop starts from.
    pub fn zeros(shape: [usize; 4], with_cell: bool, device: &B::Device) -> Self {
        Self {
            hidden: Tensor::zeros(shape, device),
            cell: with_cell.then(|| Tensor::zeros(shape, device)),
        }
    }
}

/// The recurrent layer's inputs, to be concatenated along the channels.
fn parts<B: Backend>(
    features: Tensor<B, 4>,
    hidden: Tensor<B, 4>,
    other: Option<Tensor<B, 4>>,
) -> Vec<Tensor<B, 4>> {
    let mut parts = vec![features, hidden];
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
    /// One step of the cell.
    ///
    /// # Shapes
    /// - `features`, `state.hidden`, `state.cell`, `other`: `[N, C, H, W]`
    /// - returns the new state, `[N, C, H, W]` each
    pub fn forward(
        &self,
        features: Tensor<B, 4>,
        state: CellState<B>,
        other: Option<Tensor<B, 4>>,
    ) -> CellState<B> {
        let gates = conv2d_cat(&self.gates, parts(features, state.hidden, other));
        let (hidden, cell) = B::lstm_gates(primitive(gates), state.cell.map(primitive));
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
    /// One step of the cell.
    ///
    /// # Shapes
    /// - `features`, `state.hidden`, `other`: `[N, C, H, W]`
    /// - returns the new state (no `cell`), `[N, C, H, W]`
    pub fn forward(
        &self,
        features: Tensor<B, 4>,
        state: CellState<B>,
        other: Option<Tensor<B, 4>>,
    ) -> CellState<B> {
        let hidden = state.hidden;
        let gates = conv2d_cat(
            &self.update_reset,
            parts(features.clone(), hidden.clone(), other.clone()),
        );
        let [update, reset]: [Tensor<B, 4>; 2] = gates
            .chunk(2, 1)
            .try_into()
            .expect("the gate convolution has 2 * channels outputs");
        let update = sigmoid(update);
        let candidate = tanh(conv2d_cat(
            &self.candidate,
            parts(sigmoid(reset) * hidden.clone(), features, other),
        ));
        let hidden = hidden.clone() - update.clone() * hidden + update * candidate;
        CellState { hidden, cell: None }
    }
}
