//! Time and memory measured in-process: peak RSS, medians, training steps.

use std::time::Instant;

use anyhow::Result;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{ElementConversion, Tensor};
use model::{Brn, BrnConfig};

use crate::loss::{loss, LossKind};
use crate::train::TrainBackend;

/// Peak resident set size of this process so far, in bytes (Linux `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|k| k * 1024)
}

/// Current resident set size, in bytes (Linux `VmRSS`).
pub fn rss_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|k| k * 1024)
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Reset the peak RSS to the current RSS (Linux: `echo 5 > /proc/self/clear_refs`).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Median of a non-empty list.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Times of training steps: the first (on a GPU it compiles and autotunes the kernels) and the
/// steady state.
pub struct StepTimes {
    /// Seconds of the first warm-up step.
    pub first_s: f64,
    /// Mean seconds per step over the timed steps.
    pub steady_s: f64,
}

/// Time training steps (forward, SSIM loss, backward, Adam update) of BRN on fixed patches:
/// `warmup` untimed steps (at least one), then `runs` steps back to back, as training runs them,
/// with the device synchronised only at the end.
pub fn time_train_steps<B: TrainBackend>(
    batch: usize,
    patch: usize,
    stages: usize,
    warmup: usize,
    runs: usize,
    device: &B::Device,
) -> Result<StepTimes> {
    let mut net = BrnConfig::brn().with_stages(stages).init::<B>(device)?;
    let mut optim = AdamConfig::new().init::<B, Brn<B>>();
    let shape = [batch, 3, patch, patch];
    let n = shape.iter().product::<usize>();
    let mut step = |run: usize, net: Brn<B>| {
        let pixels = (0..n)
            .map(|i| ((i * 2654435761usize + run) % 1000) as f32 / 1000.0)
            .collect::<Vec<_>>();
        let rainy = Tensor::<B, 4>::from_data(burn::tensor::TensorData::new(pixels, shape), device);
        let clean = rainy.clone().mul_scalar(0.9);
        let out = net.run(rainy.clone(), stages, false);
        let value = loss(LossKind::Ssim, rainy, clean, out);
        let grads = GradientsParams::from_grads(value.backward(), &net);
        optim.step(1e-3, net, grads)
    };
    // Reading a weight back waits for all queued work (lazy and asynchronous backends).
    let sync = |net: &Brn<B>| {
        let _: f64 = net
            .background
            .output
            .weight
            .val()
            .sum()
            .into_scalar()
            .elem();
    };
    let mut first_s = 0.0;
    for run in 0..warmup.max(1) {
        let start = Instant::now();
        net = step(run, net);
        sync(&net);
        if run == 0 {
            first_s = start.elapsed().as_secs_f64();
        }
    }
    let start = Instant::now();
    for run in 0..runs {
        net = step(warmup + run, net);
    }
    sync(&net);
    Ok(StepTimes {
        first_s,
        steady_s: start.elapsed().as_secs_f64() / runs.max(1) as f64,
    })
}
