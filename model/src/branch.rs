//! One branch of the network (the paper's SRN, used as F_r and F_x):
//! input layer f_in → recurrent layer → ResBlocks f_res → output layer f_out.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::backend::{conv2d, conv2d_relu, conv2d_relu_add, BrnBackend, Part};
use crate::cell::{conv3x3, CellState, ConvGru, ConvLstm};
use crate::config::CellKind;

/// Two 3x3 convolutions, each followed by ReLU, with an identity shortcut and a final ReLU.
#[derive(Module, Debug)]
pub struct ResBlock<B: Backend> {
    /// The first convolution.
    pub conv1: Conv2d<B>,
    /// The second convolution, before the shortcut.
    pub conv2: Conv2d<B>,
}

impl<B: BrnBackend> ResBlock<B> {
    /// # Shapes
    /// - `features`: `[N, C, H, W]` → `[N, C, H, W]`
    pub fn forward(&self, features: Tensor<B, 4>) -> Tensor<B, 4> {
        let inner = conv2d_relu(&self.conv1, features.clone());
        // relu(relu(conv2(inner)) + features)
        conv2d_relu_add(&self.conv2, inner, features)
    }
}

/// The shape of one branch.
#[derive(Clone, Copy, Debug)]
pub struct BranchShape {
    /// Image channels concatenated at the input (`cat[y, r]` = 6, `cat[y, x, r]` = 9, ...).
    pub image_channels: usize,
    /// Feature channels.
    pub channels: usize,
    /// Whether the recurrent layer also sees the other branch's hidden state.
    pub sees_other: bool,
    /// The recurrent layer.
    pub cell: CellKind,
    /// Number of ResBlocks.
    pub resblocks: usize,
}

/// One stage of a branch; its parameters are shared by all stages.
#[derive(Module, Debug)]
pub struct Branch<B: Backend> {
    /// f_in: image channels → features, followed by ReLU.
    pub input: Conv2d<B>,
    /// The recurrent layer, when it is an LSTM.
    pub lstm: Option<ConvLstm<B>>,
    /// The recurrent layer, when it is a GRU.
    pub gru: Option<ConvGru<B>>,
    /// f_res.
    pub resblocks: Vec<ResBlock<B>>,
    /// f_out: features → 3 channels.
    pub output: Conv2d<B>,
}

impl<B: Backend> Branch<B> {
    /// A freshly initialised branch.
    pub fn new(shape: BranchShape, device: &B::Device) -> Self {
        let c = shape.channels;
        let cell_inputs = c * if shape.sees_other { 3 } else { 2 };
        Self {
            input: conv3x3(shape.image_channels, c, device),
            lstm: (shape.cell == CellKind::Lstm).then(|| ConvLstm::new(cell_inputs, c, device)),
            gru: (shape.cell == CellKind::Gru).then(|| ConvGru::new(cell_inputs, c, device)),
            resblocks: (0..shape.resblocks)
                .map(|_| ResBlock {
                    conv1: conv3x3(c, c, device),
                    conv2: conv3x3(c, c, device),
                })
                .collect(),
            output: conv3x3(c, 3, device),
        }
    }

    /// Whether the branch carries a recurrent state across stages.
    pub fn is_recurrent(&self) -> bool {
        self.lstm.is_some() || self.gru.is_some()
    }
}

impl<B: BrnBackend> Branch<B> {
    /// One stage.
    ///
    /// # Shapes
    /// - `images`: `[N, image_channels, H, W]`, the concatenated image inputs of this stage
    /// - `state`: this branch's recurrent state from the previous stage, `[N, C, H, W]` (`None`
    ///   before the first: the zero state)
    /// - `other`: the other branch's hidden state, `[N, C, H, W]` (or its zeros), where the
    ///   coupling links them
    /// - returns the 3-channel output `[N, 3, H, W]` and the updated state
    pub fn forward(
        &self,
        images: Tensor<B, 4>,
        state: Option<CellState<B>>,
        other: Option<Part<B>>,
    ) -> (Tensor<B, 4>, Option<CellState<B>>) {
        let features = conv2d_relu(&self.input, images);
        let (mut features, state) = match (&self.lstm, &self.gru) {
            (Some(lstm), _) => {
                let state = lstm.forward(features, state, other);
                (state.hidden.clone(), Some(state))
            }
            (None, Some(gru)) => {
                let state = gru.forward(features, state, other);
                (state.hidden.clone(), Some(state))
            }
            (None, None) => (features, None),
        };
        for block in &self.resblocks {
            features = block.forward(features);
        }
        (conv2d(&self.output, features), state)
    }
}
