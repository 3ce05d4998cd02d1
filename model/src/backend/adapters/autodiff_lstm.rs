//! The autodiff backend's LSTM gate arithmetic as two nodes instead of the dozen burn would
//! record (chunks, sigmoids, tanhs, products, a sum, each a pass over memory forward and
//! backward): forward, the inner backend's [`BrnBackend::lstm_gates`]; backward,
//! [`BrnBackend::lstm_hidden_backward`] then [`BrnBackend::lstm_cell_backward`].
//!
//! - `Cell`, `c' = σ(f)·c + σ(i)·tanh(g)`, parents `[gates(, c)]`;
//! - `Hidden`, `h' = σ(o)·tanh(c')`, parent `[c']`.
//!
//! `h'` also depends on the gates (their `o` part), but a second parent there would make burn
//! add two full gate gradients. Instead `Hidden` hands `do` to `Cell` through a slot both
//! states share, and `Cell` writes the whole gate gradient once. That needs `Hidden`'s
//! backward to run before `Cell`'s, which is no detail of burn's scheduler: `Hidden`'s parent
//! is `c'`, the `Cell` node's output, so `Hidden` adds to the gradient `Cell`'s backward
//! consumes, and any reverse pass must run it first (burn's, going by depth, does). `Hidden`
//! checks it all the same and panics, naming the cause, where `Cell` ran first. Where `h'` gets
//! no gradient, `Hidden` does not run and `do` is zero.

use std::sync::{Arc, Mutex};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::ops::FloatTensor;

use crate::backend::BrnBackend;

/// What the two nodes of one LSTM step share: `do`, which `Hidden`'s backward leaves for
/// `Cell`'s, and whether `Cell`'s backward has run.
#[derive(Debug)]
struct Shared<B: BrnBackend> {
    grad_output: Option<FloatTensor<B>>,
    cell_done: bool,
}

/// [`Shared`] between the two nodes' states.
type Slot<B> = Arc<Mutex<Shared<B>>>;

/// An empty slot.
fn slot<B: BrnBackend>() -> Slot<B> {
    Arc::new(Mutex::new(Shared {
        grad_output: None,
        cell_done: false,
    }))
}

/// Lock a slot (a poisoned lock still holds its value).
fn open<B: BrnBackend>(slot: &Slot<B>) -> std::sync::MutexGuard<'_, Shared<B>> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// `c' = σ(f)·c + σ(i)·tanh(g)` with parents `[gates(, c)]`.
#[derive(Debug)]
struct Cell;

impl<B: BrnBackend, const N: usize> Backward<B, N> for Cell {
    /// The gates, the previous cell, and the slot for `do`.
    type State = (FloatTensor<B>, Option<FloatTensor<B>>, Slot<B>);

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad_cell = grads.consume::<B>(&ops.node);
        let (gates, previous, slot) = ops.state;
        let grad_output = {
            let mut shared = open(&slot);
            shared.cell_done = true;
            shared.grad_output.take()
        };
        let (grad_gates, grad_previous) =
            B::lstm_cell_backward(grad_cell, grad_output, gates, previous);
        if let Some(node) = &ops.parents[0] {
            grads.register::<B>(node.id, grad_gates);
        }
        if let (Some(Some(node)), Some(grad)) = (ops.parents.get(1), grad_previous) {
            grads.register::<B>(node.id, grad);
        }
    }
}

/// `h' = σ(o)·tanh(c')` with parent `[c']`.
#[derive(Debug)]
struct Hidden;

impl<B: BrnBackend> Backward<B, 1> for Hidden {
    /// The gates, the new cell `c'`, and the slot for `do`.
    type State = (FloatTensor<B>, FloatTensor<B>, Slot<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad_hidden = grads.consume::<B>(&ops.node);
        let (gates, cell, slot) = ops.state;
        let (grad_cell, grad_output) = B::lstm_hidden_backward(grad_hidden, gates, cell);
        let mut shared = open(&slot);
        assert!(
            !shared.cell_done,
            "burn ran an LSTM cell's backward step before its hidden state's, whose gradient it \
             needs (the output gate's would be lost): see model/src/backend/adapters/autodiff_lstm.rs"
        );
        shared.grad_output = Some(grad_output);
        drop(shared);
        if let Some(node) = &ops.parents[0] {
            grads.register::<B>(node.id, grad_cell);
        }
    }
}

/// The LSTM's new hidden state and cell on the autodiff backend.
type HiddenAndCell<B, C> = (FloatTensor<Autodiff<B, C>>, FloatTensor<Autodiff<B, C>>);

/// [`BrnBackend::lstm_gates`] recorded as the two nodes.
///
/// # Shapes
/// - `gates`: `[N, 4C, H, W]`, `cell`: `[N, C, H, W]` → `(hidden, cell)`, `[N, C, H, W]` each
pub fn lstm_gates<B: BrnBackend, C: CheckpointStrategy>(
    gates: FloatTensor<Autodiff<B, C>>,
    cell: Option<FloatTensor<Autodiff<B, C>>>,
) -> HiddenAndCell<B, C> {
    let previous = cell.as_ref().map(|c| c.primitive.clone());
    let (hidden, next) = B::lstm_gates(gates.primitive.clone(), previous.clone());
    let slot = slot::<B>();
    let state = (gates.primitive.clone(), previous, slot.clone());
    let next: FloatTensor<Autodiff<B, C>> = match cell {
        Some(cell) => match Cell
            .prepare::<C>([gates.node.clone(), cell.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state, next),
            OpsKind::UnTracked(prep) => prep.finish(next),
        },
        None => match Cell
            .prepare::<C>([gates.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state, next),
            OpsKind::UnTracked(prep) => prep.finish(next),
        },
    };
    let prep = <Hidden as Backward<B, 1>>::prepare::<C>(Hidden, [next.node.clone()]);
    let hidden = match prep.compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            prep.finish((gates.primitive, next.primitive.clone(), slot), hidden)
        }
        OpsKind::UnTracked(prep) => prep.finish(hidden),
    };
    (hidden, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::reference::lstm;
    use crate::backend::{primitive, tensor};
    use burn::tensor::{Distribution, Tensor, Tolerance};
    use burn_flex::Flex;

    type Ad = Autodiff<Flex>;

    /// Through the autodiff backend, the two LSTM nodes give the outputs and the gradients
    /// (gates, previous cell) that burn's own recording of the tensor operations gives (the
    /// reference), whether the loss reads `h'` and `c'`, `h'` alone or `c'` alone, with and
    /// without a previous cell.
    #[test]
    fn the_lstm_nodes_have_burns_gradients() {
        let device = Default::default();
        let random = |shape: [usize; 4]| {
            Tensor::<Ad, 4>::random(shape, Distribution::Normal(0., 1.5), &device)
        };
        let close = Tolerance::rel_abs(1e-5, 1e-6);
        let (weight_h, weight_c) = (random([2, 3, 5, 7]), random([2, 3, 5, 7]));
        for with_previous in [false, true] {
            for (reads_hidden, reads_cell) in [(true, true), (true, false), (false, true)] {
                let gates = random([2, 12, 5, 7]).require_grad();
                let previous = with_previous.then(|| random([2, 3, 5, 7]).require_grad());
                let loss = |(hidden, cell): (Tensor<Ad, 4>, Tensor<Ad, 4>)| {
                    let mut loss = Tensor::<Ad, 1>::zeros([1], &device);
                    if reads_hidden {
                        loss = loss + (hidden * weight_h.clone()).sum();
                    }
                    if reads_cell {
                        loss = loss + (cell * weight_c.clone()).sum();
                    }
                    loss
                };
                let (hidden, cell) =
                    Ad::lstm_gates(primitive(gates.clone()), previous.clone().map(primitive));
                let ours = (tensor(hidden), tensor(cell));
                let reference = lstm::forward(gates.clone(), previous.clone());
                ours.0
                    .to_data()
                    .assert_approx_eq::<f32>(&reference.0.to_data(), close);
                ours.1
                    .to_data()
                    .assert_approx_eq::<f32>(&reference.1.to_data(), close);
                let ours = loss(ours).backward();
                let reference = loss(reference).backward();
                let what =
                    format!("previous {with_previous}, reads h {reads_hidden} c {reads_cell}");
                gates
                    .grad(&ours)
                    .expect(&what)
                    .to_data()
                    .assert_approx_eq::<f32>(&gates.grad(&reference).unwrap().to_data(), close);
                if let Some(previous) = &previous {
                    previous
                        .grad(&ours)
                        .expect(&what)
                        .to_data()
                        .assert_approx_eq::<f32>(
                            &previous.grad(&reference).unwrap().to_data(),
                            close,
                        );
                }
            }
        }
    }

    /// Three LSTM steps in a row, as the model's stages run them (each step's gates read the
    /// previous hidden state, its cell the previous cell), give burn's own gradients for every
    /// step's gate input and the first cell: the order in which burn runs the six nodes'
    /// backward steps is the one they rely on (`Hidden` panics where a `Cell` ran first, and
    /// `do` would be lost).
    #[test]
    fn a_recurrence_of_lstm_steps_has_burns_gradients() {
        let device = Default::default();
        let random = |shape: [usize; 4]| {
            Tensor::<Ad, 4>::random(shape, Distribution::Normal(0., 1.), &device)
        };
        let inputs: Vec<_> = (0..3)
            .map(|_| random([1, 8, 4, 5]).require_grad())
            .collect();
        let first_cell = random([1, 2, 4, 5]).require_grad();
        let weight = random([1, 2, 4, 5]);
        type Step = fn(Tensor<Ad, 4>, Option<Tensor<Ad, 4>>) -> (Tensor<Ad, 4>, Tensor<Ad, 4>);
        let ours: Step = |gates, cell| {
            let (hidden, cell) = Ad::lstm_gates(primitive(gates), cell.map(primitive));
            (tensor(hidden), tensor(cell))
        };
        let burns: Step = lstm::forward;
        let run = |step: Step| {
            let (mut hidden, mut cell) = (None::<Tensor<Ad, 4>>, Some(first_cell.clone()));
            for input in &inputs {
                let gates = match &hidden {
                    Some(h) => input.clone() + Tensor::cat(vec![h.clone(); 4], 1),
                    None => input.clone(),
                };
                let (h, c) = step(gates, cell);
                (hidden, cell) = (Some(h), Some(c));
            }
            let loss = (hidden.unwrap() * weight.clone()).sum() + cell.unwrap().sum();
            loss.backward()
        };
        let (ours, burns) = (run(ours), run(burns));
        let close = Tolerance::rel_abs(1e-5, 1e-6);
        for (i, input) in inputs.iter().enumerate() {
            let grad = input.grad(&ours).unwrap_or_else(|| panic!("step {i}"));
            grad.to_data()
                .assert_approx_eq::<f32>(&input.grad(&burns).unwrap().to_data(), close);
        }
        first_cell
            .grad(&ours)
            .unwrap()
            .to_data()
            .assert_approx_eq::<f32>(&first_cell.grad(&burns).unwrap().to_data(), close);
    }
}
