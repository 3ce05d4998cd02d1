//! `brn train`: start, resume and time-box training runs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::DeviceArgs;
use anyhow::{bail, Result};
use clap::Args;
use model::BrnBackend;

use crate::config::TrainConfig;
use crate::device::{run_on, Job};
use crate::train::Limits;

/// Arguments of `brn train`.
#[derive(Args)]
pub struct TrainArgs {
    /// JSON training config (saved as config.json in the output folder).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output folder for checkpoints, log.csv and config.json.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Continue the run in this folder from its latest checkpoint (its config.json unless --config).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Stop after this many steps (a time-boxed run; continue later with --resume).
    #[arg(long)]
    max_steps: Option<usize>,
    /// Stop before this much wall time (seconds, or 90s, 8m, 1h30m) with a checkpoint, and
    /// exit 0: for machines held for minutes. Continue later with --resume, on any machine.
    #[arg(long, value_parser = parse_duration)]
    time_limit: Option<Duration>,
    /// Override: epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override: steps per epoch.
    #[arg(long)]
    steps_per_epoch: Option<usize>,
    /// Override: batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Override: patch side in pixels.
    #[arg(long)]
    patch: Option<usize>,
    /// Override: learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Override: random seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override: stages T.
    #[arg(long)]
    stages: Option<usize>,
    /// Start a new run from these weights (our record or an authors' .pth of the same
    /// architecture) with a fresh optimizer.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Where it runs.
    #[command(flatten)]
    device: DeviceArgs,
}

/// Start or resume the training run the arguments describe.
pub fn run(args: TrainArgs) -> Result<ExitCode> {
    args.device.apply();
    let (out, resume) = match (&args.resume, &args.output) {
        (Some(dir), None) => (dir.clone(), true),
        (None, Some(dir)) => (dir.clone(), false),
        (Some(_), Some(_)) => {
            bail!("give either --output (a new run) or --resume DIR (continue one), not both")
        }
        (None, None) => bail!("give --output DIR for a new run, or --resume DIR to continue one"),
    };
    let config_path = match (&args.config, resume) {
        (Some(path), _) => path.clone(),
        (None, true) => out.join("config.json"),
        (None, false) => bail!("a new run needs --config FILE"),
    };
    let mut config = crate::train::TrainConfig::load(&config_path)?;
    if let Some(v) = args.epochs {
        config.epochs = v;
    }
    if let Some(v) = args.steps_per_epoch {
        config.steps_per_epoch = v;
    }
    if let Some(v) = args.batch_size {
        config.batch_size = v;
    }
    if let Some(v) = args.patch {
        config.patch = v;
    }
    if let Some(v) = args.lr {
        config.lr = v;
    }
    if let Some(v) = args.seed {
        config.seed = v;
    }
    if let Some(v) = args.stages {
        config.model.stages = v;
    }
    if let Some(path) = args.init {
        if resume {
            bail!("--init starts a new run; a resumed run continues from its checkpoint");
        }
        config.init = Some(path);
    }
    config.validate()?;
    let _ = ctrlc::set_handler(|| {
        eprintln!("\nstopping: saving a checkpoint after this step (Ctrl-C again to abort)");
        if crate::train::STOP.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    let job = TrainJob {
        config,
        cache: args.device.cache.unwrap_or_else(|| out.join("cache")),
        out,
        resume,
        limits: Limits {
            max_steps: args.max_steps,
            time: args.time_limit,
        },
        cpu: None,
    };
    run_on(&args.device.device, job)
}

/// A checked training request.
struct TrainJob {
    config: TrainConfig,
    out: PathBuf,
    cache: PathBuf,
    resume: bool,
    limits: Limits,
    /// On the CPU: what computes the convolutions ([`crate::device::cpu_products`]).
    cpu: Option<String>,
}

impl Job for TrainJob {
    const SEVERAL_DEVICES: bool = true;

    fn kernel_cache(&self) -> Option<PathBuf> {
        Some(self.cache.clone())
    }

    fn use_cpu(&mut self, products: &str) {
        self.cpu = Some(products.to_string());
    }

    fn run<B: BrnBackend>(self, devices: &[B::Device]) -> Result<ExitCode> {
        if let Some(products) = &self.cpu {
            record_session(&self.out, self.resume, products)?;
        }
        let steps = crate::train::train::<burn::backend::Autodiff<B>>(
            self.config,
            &self.out,
            self.resume,
            self.limits,
            devices,
        )?;
        eprintln!(
            "trained to step {steps}; checkpoints in {}",
            self.out.display()
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// One line in the run folder's `sessions.log` for each start or resume on the CPU: when (UTC),
/// and the CPU and products it trains with (speeds in `log.csv` depend on them).
fn record_session(out: &std::path::Path, resume: bool, products: &str) -> Result<()> {
    use anyhow::Context;
    use std::io::Write;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let path = out.join("sessions.log");
    let what = if resume { "resumed" } else { "started" };
    let line = format!("{} {what}; {products}", utc_now());
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| writeln!(file, "{line}"))
        .with_context(|| format!("cannot write the log {}", path.display()))
}

/// Now as `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, time) = (seconds / 86_400, seconds % 86_400);
    let [year, month, day] = civil_date(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        time / 3600,
        time % 3600 / 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_date(days: i64) -> [i64; 3] {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    [year, month, day]
}

/// A duration in seconds (`600`), or with units: `90s`, `8m`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("'{text}' is not a duration: use seconds (600) or units (90s, 8m, 1h30m)");
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds > 0.0 && seconds.is_finite())
            .then(|| Duration::from_secs_f64(seconds))
            .ok_or_else(bad);
    }
    let (mut total, mut number) = (0.0, String::new());
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            _ => return Err(bad()),
        };
        total += number.parse::<f64>().map_err(|_| bad())? * unit;
        number.clear();
    }
    if !number.is_empty() || total <= 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::{civil_date, parse_duration};
    use std::time::Duration;

    /// Against Python's `datetime.date(1970, 1, 1) + timedelta(days)`: the epoch, a leap day,
    /// the turn of a century that is a leap year, and one that is not.
    #[test]
    fn days_since_the_epoch_are_dates() {
        assert_eq!(civil_date(0), [1970, 1, 1]);
        assert_eq!(civil_date(59), [1970, 3, 1]); // 31 + 28 days
        assert_eq!(civil_date(365 + 365 + 31 + 28), [1972, 2, 29]);
        assert_eq!(civil_date(10_957), [2000, 1, 1]); // 30·365 + 7 leap days
        assert_eq!(civil_date(11_016), [2000, 2, 29]);
        assert_eq!(civil_date(47_541), [2100, 3, 1]); // 2100 has no 29 February
        assert_eq!(civil_date(47_540), [2100, 2, 28]);
    }

    #[test]
    fn durations_parse_with_and_without_units() {
        for (text, seconds) in [
            ("600", 600.0),
            ("2.5", 2.5),
            ("90s", 90.0),
            ("8m", 480.0),
            ("1h30m", 5400.0),
            ("1m30s", 90.0),
        ] {
            assert_eq!(parse_duration(text), Ok(Duration::from_secs_f64(seconds)));
        }
        for bad in ["", "0", "-5", "8x", "m", "10m5", "1e400"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("is not a duration"), "{bad}: {err}");
        }
    }
}
