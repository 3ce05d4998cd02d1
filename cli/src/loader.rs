//! The training data loader: batches made ahead of the training step on a background thread,
//! several at a time on all cores, delivered in step order.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::config::TrainConfig;
use crate::data::Sources;

/// One batch: rainy and clean patches, planar `[batch, 3, P, P]` each.
pub type Batch = (Vec<f32>, Vec<f32>);

/// Batches `start..end` of a run, made in the background.
pub struct Loader {
    batches: Receiver<Batch>,
    made: Arc<Counters>,
    waited: Cell<Duration>,
}

#[derive(Default)]
struct Counters {
    patches: AtomicU64,
    busy_nanos: AtomicU64,
}

impl Loader {
    /// Start making batches `start..end` of the run `config` describes. Batch `step` is a
    /// pure function of (seed, step) ([`Sources::batch`]), so the order of work does not
    /// matter; rounds of several batches keep every core busy even when a batch holds fewer
    /// patches than there are cores, and up to two rounds wait ready.
    pub fn spawn(sources: Arc<Sources>, config: &TrainConfig, start: usize, end: usize) -> Self {
        use rayon::prelude::*;
        let (seed, batch, patch) = (config.seed, config.batch_size, config.patch);
        let round = rayon::current_num_threads().div_ceil(batch).max(2);
        let (tx, rx) = sync_channel(2 * round);
        let made = Arc::new(Counters::default());
        let counters = made.clone();
        std::thread::spawn(move || {
            let mut step = start;
            while step < end {
                let until = (step + round).min(end);
                let started = Instant::now();
                let batches: Vec<Batch> = (step..until)
                    .into_par_iter()
                    .map(|s| sources.batch(seed, s, batch, patch))
                    .collect();
                counters
                    .busy_nanos
                    .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                counters
                    .patches
                    .fetch_add(((until - step) * batch) as u64, Ordering::Relaxed);
                for b in batches {
                    if tx.send(b).is_err() {
                        return;
                    }
                }
                step = until;
            }
        });
        Self {
            batches: rx,
            made,
            waited: Cell::new(Duration::ZERO),
        }
    }

    /// The next batch, waiting for it if it is not ready.
    pub fn next(&self) -> Result<Batch> {
        let started = Instant::now();
        let batch = self.batches.recv().context("the data loader stopped")?;
        self.waited.set(self.waited.get() + started.elapsed());
        Ok(batch)
    }

    /// Patches the loader makes per second while working (its capacity).
    pub fn patches_per_second(&self) -> f64 {
        let nanos = self.made.busy_nanos.load(Ordering::Relaxed).max(1);
        self.made.patches.load(Ordering::Relaxed) as f64 / (nanos as f64 * 1e-9)
    }

    /// How long the training loop has waited for batches so far (0 when the loader keeps up).
    pub fn waited(&self) -> Duration {
        self.waited.get()
    }
}
