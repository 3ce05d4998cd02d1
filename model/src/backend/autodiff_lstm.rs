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
//! states share, and `Cell` writes the whole gate gradient once: burn runs a node's backward
//! after every node deeper in the graph (its steps go by depth, deepest first), and `Hidden`
//! is one deeper than `Cell`. Where `h'` gets no gradient, `Hidden` does not run and `do`
//! is zero.

use std::sync::{Arc, Mutex};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::ops::FloatTensor;

use super::BrnBackend;

/// Where `Hidden`'s backward leaves `do` for `Cell`'s.
type Slot<B> = Arc<Mutex<Option<FloatTensor<B>>>>;

/// Take what a slot holds (a poisoned lock still holds its value).
fn take<B: BrnBackend>(slot: &Slot<B>) -> Option<FloatTensor<B>> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
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
        let (grad_gates, grad_previous) =
            B::lstm_cell_backward(grad_cell, take::<B>(&slot), gates, previous);
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
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(grad_output);
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
    let slot: Slot<B> = Arc::new(Mutex::new(None));
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
