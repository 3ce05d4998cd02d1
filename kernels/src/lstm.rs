//! The convolutional LSTM's gate arithmetic (the paper's Eq. 6/7 after its one gate
//! convolution) and its two backward steps, each as one pass over memory.
//!
//! Forward: `i, f, g, o = split(gates)`, `c' = σ(f)·c + σ(i)·tanh(g)` (`σ(i)·tanh(g)` at the
//! first stage, without `c`), `h' = σ(o)·tanh(c')`. Backward, with `s_k = σ(k)`,
//! `t_g = tanh(g)`, `t = tanh(c')`:
//! - through `h'`: `dc' += dh'·s_o·(1 − t²)`, `do = dh'·t·s_o·(1 − s_o)`;
//! - through `c'`: `di = dc'·t_g·s_i·(1 − s_i)`, `df = dc'·c·s_f·(1 − s_f)`,
//!   `dg = dc'·s_i·(1 − t_g²)`, `dc = dc'·s_f`.
//!
//! Contract: f32, row-major `[N, 4C, plane]` gates (`i; f; g; o` blocks of `C` channels) and
//! `[N, C, plane]` maps; one task per `(image, channel)` plane ([`super::parallel`]), each
//! value computed alone, so the result does not depend on the thread count.

use std::mem::MaybeUninit;

use super::activation::{logistic, simd_loop, tanh};
use super::parallel::{collect_chunk_pairs, collect_chunks};

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
    let step = |q: usize, hidden: &mut [MaybeUninit<f32>], cell_out: &mut [MaybeUninit<f32>]| {
        let (n, c) = (q / channels, q % channels);
        let gate = |k: usize| &gates[((n * 4 + k) * channels + c) * plane..][..plane];
        let (input, forget, candidate, output) = (gate(0), gate(1), gate(2), gate(3));
        let previous = cell.map(|cell| &cell[q * plane..][..plane]);
        gates_plane(input, forget, candidate, output, previous, hidden, cell_out);
    };
    collect_chunk_pairs(batch * channels * plane, plane, step)
}

/// The backward step through `h' = σ(o)·tanh(c')` in one pass, plane by plane (in parallel with the
/// `parallel` feature): `(dc', do)`.
///
/// # Shapes
/// - `grad_hidden`, `cell`: `[N, C, plane]`, `gates`: `[N, 4C, plane]`
/// - returns `[N, C, plane]` each
pub fn hidden_backward(
    grad_hidden: &[f32],
    gates: &[f32],
    cell: &[f32],
    channels: usize,
    plane: usize,
) -> (Vec<f32>, Vec<f32>) {
    let step =
        |q: usize, grad_cell: &mut [MaybeUninit<f32>], grad_output: &mut [MaybeUninit<f32>]| {
            let (n, c) = (q / channels, q % channels);
            let output = &gates[((n * 4 + 3) * channels + c) * plane..][..plane];
            let (grad_hidden, cell) = (
                &grad_hidden[q * plane..][..plane],
                &cell[q * plane..][..plane],
            );
            hidden_plane(grad_hidden, output, cell, grad_cell, grad_output);
        };
    collect_chunk_pairs(grad_hidden.len(), plane, step)
}

/// The backward step through `c' = σ(f)·c + σ(i)·tanh(g)` in one pass over the gates' gradient and one over `dc`,
/// plane by plane (in parallel with the `parallel` feature).
///
/// # Shapes
/// - `grad_cell`, `grad_output`, `previous`: `[N, C, plane]`, `gates`: `[N, 4C, plane]`
/// - returns `[N, 4C, plane]` and `[N, C, plane]`
pub fn cell_backward(
    grad_cell: &[f32],
    grad_output: Option<&[f32]>,
    gates: &[f32],
    previous: Option<&[f32]>,
    channels: usize,
    plane: usize,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let gate_plane = |j: usize, target: &mut [MaybeUninit<f32>]| {
        // Plane j of the gates' gradient: image n, gate k, channel c.
        let (n, k, c) = (j / (4 * channels), j / channels % 4, j % channels);
        let q = n * channels + c;
        let gate = |k: usize| &gates[((n * 4 + k) * channels + c) * plane..][..plane];
        let grad_cell = &grad_cell[q * plane..][..plane];
        match k {
            0 => {
                let (input, candidate) = (gate(0), gate(2));
                input_gate_plane(grad_cell, input, candidate, target);
            }
            1 => {
                if let Some(previous) = previous {
                    let (forget, previous) = (gate(1), &previous[q * plane..][..plane]);
                    forget_gate_plane(grad_cell, forget, previous, target);
                } else {
                    // No `c` (the first stage): `f` does not reach the output.
                    copy_plane(None, target);
                }
            }
            2 => {
                let (input, candidate) = (gate(0), gate(2));
                candidate_plane(grad_cell, input, candidate, target);
            }
            _ => {
                copy_plane(grad_output.map(|g| &g[q * plane..][..plane]), target);
            }
        }
    };
    let grad_previous = previous.map(|_| {
        let previous_plane = |q: usize, target: &mut [MaybeUninit<f32>]| {
            let n = q / channels;
            let forget = &gates[((n * 4 + 1) * channels + q % channels) * plane..][..plane];
            let grad_cell = &grad_cell[q * plane..][..plane];
            previous_cell_plane(grad_cell, forget, target);
        };
        collect_chunks(grad_cell.len(), plane, previous_plane)
    });
    (
        collect_chunks(gates.len(), plane, gate_plane),
        grad_previous,
    )
}

// One plane of each pass, compiled for AVX-512 where the CPU has it. Each slices its inputs
// to the target's length first, so that the loop runs without bounds checks, in vectors.

simd_loop! {
    /// `c' = σ(f)·c + σ(i)·tanh(g)` (`σ(i)·tanh(g)` without `c`), `h' = σ(o)·tanh(c')`.
    fn gates_plane(
        input: &[f32],
        forget: &[f32],
        candidate: &[f32],
        output: &[f32],
        previous: Option<&[f32]>,
        hidden: &mut [MaybeUninit<f32>],
        cell: &mut [MaybeUninit<f32>],
    ) {
        let n = hidden.len();
        let (input, forget, candidate) = (&input[..n], &forget[..n], &candidate[..n]);
        let (output, cell) = (&output[..n], &mut cell[..n]);
        match previous {
            Some(previous) => {
                let previous = &previous[..n];
                for p in 0..n {
                    let next = logistic(forget[p]) * previous[p]
                        + logistic(input[p]) * tanh(candidate[p]);
                    cell[p].write(next);
                    hidden[p].write(logistic(output[p]) * tanh(next));
                }
            }
            None => {
                for p in 0..n {
                    let next = logistic(input[p]) * tanh(candidate[p]);
                    cell[p].write(next);
                    hidden[p].write(logistic(output[p]) * tanh(next));
                }
            }
        }
    }
}

simd_loop! {
    /// `dc' = dh'·s_o·(1 − t²)`, `do = dh'·t·s_o·(1 − s_o)`.
    fn hidden_plane(
        grad_hidden: &[f32],
        output: &[f32],
        cell: &[f32],
        grad_cell: &mut [MaybeUninit<f32>],
        grad_output: &mut [MaybeUninit<f32>],
    ) {
        let n = grad_cell.len();
        let (grad_hidden, output, cell) = (&grad_hidden[..n], &output[..n], &cell[..n]);
        let grad_output = &mut grad_output[..n];
        for p in 0..n {
            let (s, t) = (logistic(output[p]), tanh(cell[p]));
            grad_cell[p].write(grad_hidden[p] * s * (1.0 - t * t));
            grad_output[p].write(grad_hidden[p] * t * s * (1.0 - s));
        }
    }
}

simd_loop! {
    /// `di = dc'·t_g·s_i·(1 − s_i)`.
    fn input_gate_plane(grad_cell: &[f32], input: &[f32], candidate: &[f32], target: &mut [MaybeUninit<f32>]) {
        let n = target.len();
        let (grad_cell, input, candidate) = (&grad_cell[..n], &input[..n], &candidate[..n]);
        for p in 0..n {
            let s = logistic(input[p]);
            target[p].write(grad_cell[p] * tanh(candidate[p]) * s * (1.0 - s));
        }
    }
}

simd_loop! {
    /// `df = dc'·c·s_f·(1 − s_f)`.
    fn forget_gate_plane(grad_cell: &[f32], forget: &[f32], previous: &[f32], target: &mut [MaybeUninit<f32>]) {
        let n = target.len();
        let (grad_cell, forget, previous) = (&grad_cell[..n], &forget[..n], &previous[..n]);
        for p in 0..n {
            let s = logistic(forget[p]);
            target[p].write(grad_cell[p] * previous[p] * s * (1.0 - s));
        }
    }
}

simd_loop! {
    /// `dg = dc'·s_i·(1 − t_g²)`.
    fn candidate_plane(grad_cell: &[f32], input: &[f32], candidate: &[f32], target: &mut [MaybeUninit<f32>]) {
        let n = target.len();
        let (grad_cell, input, candidate) = (&grad_cell[..n], &input[..n], &candidate[..n]);
        for p in 0..n {
            let t = tanh(candidate[p]);
            target[p].write(grad_cell[p] * logistic(input[p]) * (1.0 - t * t));
        }
    }
}

/// `target = source`, or zeros without it.
fn copy_plane(source: Option<&[f32]>, target: &mut [MaybeUninit<f32>]) {
    match source {
        Some(source) => super::elementwise::copy_values(source, target),
        None => target.fill(MaybeUninit::new(0.0)),
    }
}

simd_loop! {
    /// `dc = dc'·s_f`.
    fn previous_cell_plane(grad_cell: &[f32], forget: &[f32], target: &mut [MaybeUninit<f32>]) {
        let n = target.len();
        let (grad_cell, forget) = (&grad_cell[..n], &forget[..n]);
        for p in 0..n {
            target[p].write(grad_cell[p] * logistic(forget[p]));
        }
    }
}
