//! The training configuration: what a run is made of, with the paper's defaults; saved as
//! `config.json` in the run folder and next to every checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::optim::AdamConfig;
use model::BrnConfig;
use serde::{Deserialize, Serialize};

use crate::degrade::Degradations;
use crate::loss::LossKind;
use crate::rain::{Preset, RainMix};

/// Everything a training run is made of; saved next to every checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The architecture: a preset name (`"brn"`), or an object of `BrnConfig` fields over the
    /// preset named by its `arch` field (default `brn`), e.g. `{"arch": "prenet", "stages": 4}`.
    #[serde(deserialize_with = "model_spec")]
    pub model: BrnConfig,
    /// The loss (`ssim`, the paper's; `ssim_l1`, `mse`, `recursive`, `rain_supervised`).
    #[serde(default = "defaults::loss")]
    pub loss: LossKind,
    /// Epochs: with the paper's schedule the learning rate drops ×0.2 at 30 %, 50 % and 80 %
    /// of them (the paper's 30/50/80 of 100).
    #[serde(default = "defaults::epochs")]
    pub epochs: usize,
    /// How the learning rate moves over the planned steps (epochs × steps per epoch).
    #[serde(default)]
    pub schedule: Schedule,
    /// Steps (batches) per epoch.
    #[serde(default = "defaults::steps_per_epoch")]
    pub steps_per_epoch: usize,
    /// Patches per step.
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// Square training patch side in pixels.
    #[serde(default = "defaults::patch")]
    pub patch: usize,
    /// The peak learning rate (the schedule's start, or its top after the warm-up).
    #[serde(default = "defaults::lr")]
    pub lr: f64,
    /// Adam's settings: burn's `AdamConfig`, its defaults for the fields not given (e.g.
    /// `{"epsilon": 1e-8}` for PyTorch's epsilon, which the authors trained with).
    #[serde(default = "AdamConfig::new", deserialize_with = "optimizer_spec")]
    pub optimizer: AdamConfig,
    /// Seeds the initial weights and the patches (a run repeats bit for bit).
    #[serde(default)]
    pub seed: u64,
    /// Folders of clean photos made rainy on the fly.
    #[serde(default)]
    pub clean: Vec<PathBuf>,
    /// Rain presets to draw from for each synthetic patch (e.g. ["light", "heavy"]; `none`
    /// draws a rain-free patch); the validation photos take those that rain in turn.
    #[serde(default = "defaults::presets")]
    pub presets: Vec<String>,
    /// The folder of rain streak layers the rendered presets draw from (default
    /// `../shared/data/streaks/garg-nayar`); read only when a rendered preset is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streaks: Option<PathBuf>,
    /// Camera degradations of the rainy input (sensor noise, JPEG), e.g.
    /// `{"probability": 0.5, "noise": [0, 0.02], "jpeg": [60, 95]}`; none when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degrade: Option<Degradations>,
    /// The share of synthetic training patches whose clean photo is first made smooth (blurred
    /// flat, or a plain colour with a gentle gradient: `smooth.rs`), then rained on; 0: none.
    #[serde(default, skip_serializing_if = "defaults::is_zero")]
    pub smooth: f64,
    /// How strong the presets' veil and fog are (heavy, varied, depth, rendered-heavy): a
    /// scale of their ranges from 0 (none: the same streaks without them) to 1 (as defined,
    /// the default); `true` and `false` stand for 1 and 0.
    #[serde(
        default = "defaults::one",
        deserialize_with = "veil_strength",
        skip_serializing_if = "defaults::is_one"
    )]
    pub veil: f64,
    /// The share of the veiled presets' draws that keep their veil and fog (the others draw the
    /// same streaks without them); 1, the default: all.
    #[serde(default = "defaults::one", skip_serializing_if = "defaults::is_one")]
    pub veil_share: f64,
    /// Whether `veil` and `veil_share` also take the depth preset's fog (the default); `false`
    /// leaves the fog as the preset defines it and weakens the veils of accumulation alone.
    #[serde(default = "defaults::yes", skip_serializing_if = "defaults::is_true")]
    pub veil_fog: bool,
    /// Paired folders (Rain100L/H, Rain1400/12600 or rainy/ + clean/ layouts).
    #[serde(default)]
    pub paired: Vec<PathBuf>,
    /// Folders of clean photos for validation (made rainy with a fixed seed).
    #[serde(default)]
    pub validation: Vec<PathBuf>,
    /// Validation images are centre-cropped to at most this side (CPU time).
    #[serde(default = "defaults::validation_crop")]
    pub validation_crop: usize,
    /// Save a checkpoint every this many steps (and at every epoch end).
    #[serde(default = "defaults::checkpoint_every")]
    pub checkpoint_every: usize,
    /// Start a new run from these weights (our record or an authors' `.pth` of the same
    /// architecture; T may differ) instead of random ones; the optimizer starts fresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
}

impl PartialEq for TrainConfig {
    /// Equal when they serialise alike (burn's `AdamConfig` has no `PartialEq`).
    fn eq(&self, other: &Self) -> bool {
        serde_json::to_value(self).ok() == serde_json::to_value(other).ok()
    }
}

/// The learning-rate schedule over a run's planned steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// The paper's: `lr`, then ×0.2 at 30 %, 50 % and 80 % of the epochs.
    #[default]
    Steps,
    /// A linear warm-up from `lr`/100 over the first 2 % of the steps, then a cosine from `lr`
    /// down to `lr`/100 at the last step.
    Cosine,
}

/// The veil's strength: a number, or `true` / `false` for 1 / 0 (configs written before it
/// was a number).
fn veil_strength<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Strength {
        On(bool),
        Scale(f64),
    }
    Ok(match Strength::deserialize(deserializer)? {
        Strength::On(on) => f64::from(u8::from(on)),
        Strength::Scale(scale) => scale,
    })
}

/// Adam's settings as fields over burn's defaults.
fn optimizer_spec<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<AdamConfig, D::Error> {
    use serde::de::Error;
    let given = serde_json::Map::deserialize(deserializer)?;
    let mut merged = serde_json::to_value(AdamConfig::new()).map_err(D::Error::custom)?;
    for (key, value) in given {
        if merged.get(&key).is_none() {
            return Err(D::Error::custom(format!(
                "unknown optimizer field `{key}` (known: beta_1, beta_2, epsilon, amsgrad, weight_decay, grad_clipping)"
            )));
        }
        merged[key] = value;
    }
    serde_json::from_value(merged).map_err(D::Error::custom)
}

/// A model given as a preset name or as fields over a preset.
fn model_spec<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<BrnConfig, D::Error> {
    use serde::de::Error;
    let value = serde_json::Value::deserialize(deserializer)?;
    let (arch, fields) = match value {
        serde_json::Value::String(name) => (name, serde_json::Map::new()),
        serde_json::Value::Object(mut fields) => {
            let arch = match fields.remove("arch") {
                Some(serde_json::Value::String(name)) => name,
                Some(other) => {
                    return Err(D::Error::custom(format!(
                        "model.arch must be a preset name, not {other}"
                    )))
                }
                None => "brn".to_string(),
            };
            (arch, fields)
        }
        other => {
            return Err(D::Error::custom(format!(
                "model must be a preset name or an object, not {other}"
            )))
        }
    };
    let base = BrnConfig::preset(&arch).map_err(D::Error::custom)?;
    let mut merged = serde_json::to_value(base).map_err(D::Error::custom)?;
    let known: Vec<String> = merged
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    for (key, value) in fields {
        if !known.contains(&key) {
            return Err(D::Error::custom(format!(
                "unknown model field `{key}` (known: arch, {})",
                known.join(", ")
            )));
        }
        merged[key] = value;
    }
    serde_json::from_value(merged).map_err(D::Error::custom)
}

/// The defaults of the fields the config leaves out: the paper's recipe.
mod defaults {
    use super::LossKind;
    pub(super) fn loss() -> LossKind {
        LossKind::Ssim
    }
    pub(super) fn epochs() -> usize {
        100
    }
    pub(super) fn steps_per_epoch() -> usize {
        100
    }
    pub(super) fn batch_size() -> usize {
        12
    }
    pub(super) fn patch() -> usize {
        100
    }
    pub(super) fn lr() -> f64 {
        1e-3
    }
    pub(super) fn presets() -> Vec<String> {
        vec!["light".into(), "heavy".into()]
    }
    pub(super) fn validation_crop() -> usize {
        256
    }
    pub(super) fn checkpoint_every() -> usize {
        100
    }
    pub(super) fn yes() -> bool {
        true
    }
    pub(super) fn is_true(value: &bool) -> bool {
        *value
    }
    pub(super) fn one() -> f64 {
        1.0
    }
    pub(super) fn is_one(value: &f64) -> bool {
        *value == 1.0
    }
    pub(super) fn is_zero(value: &f64) -> bool {
        *value == 0.0
    }
}

impl TrainConfig {
    /// Refuse configurations that cannot train, saying which field is wrong.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        for (name, value) in [
            ("epochs", self.epochs),
            ("steps_per_epoch", self.steps_per_epoch),
            ("batch_size", self.batch_size),
            ("checkpoint_every", self.checkpoint_every),
        ] {
            if value == 0 {
                bail!("config: {name} must be at least 1");
            }
        }
        if self.patch < 16 {
            bail!("config: patch must be at least 16 pixels (the paper uses 100)");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("config: lr must be a positive number");
        }
        if self.clean.is_empty() && self.paired.is_empty() {
            bail!("config: give training data: `clean` folders (synthetic rain) and/or `paired` folders");
        }
        for preset in &self.presets {
            if Preset::named(preset).is_none() {
                bail!(
                    "config: unknown rain preset '{preset}' (known: {})",
                    Preset::NAMES.join(", ")
                );
            }
        }
        if let Some(degrade) = &self.degrade {
            degrade.validate()?;
        }
        if !(0.0..=1.0).contains(&self.smooth) {
            bail!("config: smooth must be a share between 0 and 1");
        }
        if !(0.0..=1.0).contains(&self.veil) {
            bail!("config: veil must be a strength between 0 and 1 (or true / false)");
        }
        if !(0.0..=1.0).contains(&self.veil_share) {
            bail!("config: veil_share must be a share between 0 and 1");
        }
        if !self.clean.is_empty() && self.presets.is_empty() {
            bail!("config: `presets` must name at least one rain preset for the clean folders");
        }
        Ok(())
    }

    /// Whether `other` describes the same run as `self` (model, schedule, seed, data mix),
    /// where only the folders the data is read from may differ: a run moved to another
    /// machine finds its photos elsewhere.
    pub fn same_run(&self, other: &Self) -> bool {
        let place_free = |c: &Self| Self {
            clean: c.clean.iter().map(|_| PathBuf::new()).collect(),
            paired: c.paired.iter().map(|_| PathBuf::new()).collect(),
            validation: c.validation.iter().map(|_| PathBuf::new()).collect(),
            init: c.init.as_ref().map(|_| PathBuf::new()),
            streaks: None,
            ..c.clone()
        };
        place_free(self) == place_free(other)
    }

    /// The folder the rendered rain presets read their streak layers from.
    pub fn streak_folder(&self) -> PathBuf {
        self.streaks
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::rendered::DEFAULT_FOLDER))
    }

    /// The config's rain presets ready to rain (veil and fog as `veil`, `veil_share` and
    /// `veil_fog` say).
    pub fn rain_mix(&self) -> Result<RainMix> {
        let mix = RainMix::new(&self.presets, &self.streak_folder())?;
        Ok(mix.with_veil(self.veil as f32, self.veil_share, self.veil_fog))
    }

    /// The run's planned number of steps.
    pub fn total_steps(&self) -> usize {
        self.epochs * self.steps_per_epoch
    }

    /// Learning rate of `step` (0-based) under the config's schedule.
    pub fn lr_at(&self, step: usize) -> f64 {
        match self.schedule {
            Schedule::Steps => {
                let epoch = step / self.steps_per_epoch;
                let drops = [30, 50, 80]
                    .iter()
                    .filter(|&&m| epoch * 100 >= m * self.epochs)
                    .count();
                self.lr * 0.2f64.powi(drops as i32)
            }
            Schedule::Cosine => {
                let total = self.total_steps().max(1) as f64;
                let floor = self.lr / 100.0;
                let warm_up = (total * 0.02).ceil();
                let step = step as f64;
                if step < warm_up {
                    floor + (self.lr - floor) * step / warm_up
                } else {
                    let progress = ((step - warm_up) / (total - warm_up).max(1.0)).min(1.0);
                    floor
                        + (self.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
                }
            }
        }
    }

    /// Read a JSON or TOML-free JSON config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let config: Self = serde_json::from_str(&text)
            .with_context(|| format!("config {} is not valid", path.display()))?;
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::TrainConfig;

    fn parse(extra: serde_json::Value) -> Result<TrainConfig, String> {
        let mut config = serde_json::json!({"model": "brn", "clean": ["photos"]});
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        serde_json::from_value(config).map_err(|e| e.to_string())
    }

    #[test]
    fn the_optimizer_takes_fields_over_burns_defaults() {
        let default = parse(serde_json::json!({})).unwrap();
        let pytorch = parse(serde_json::json!({"optimizer": {"epsilon": 1e-8}})).unwrap();
        let as_json = |c: &TrainConfig| serde_json::to_value(&c.optimizer).unwrap();
        assert_eq!(as_json(&default)["epsilon"].as_f64().unwrap() as f32, 1e-5);
        assert_eq!(as_json(&pytorch)["epsilon"].as_f64().unwrap() as f32, 1e-8);
        assert_eq!(as_json(&pytorch)["beta_2"], as_json(&default)["beta_2"]);
        assert_ne!(default, pytorch);
        // A saved config (every field written out) reads back equal.
        let saved = serde_json::to_string(&pytorch).unwrap();
        assert_eq!(
            serde_json::from_str::<TrainConfig>(&saved).unwrap(),
            pytorch
        );
        let err = parse(serde_json::json!({"optimizer": {"momentum": 0.9}})).unwrap_err();
        assert!(err.contains("unknown optimizer field `momentum`"), "{err}");
    }

    #[test]
    fn schedules_follow_their_definitions() {
        // The paper's: 10 epochs of 10 steps, drops at epochs 3, 5 and 8; a config without a
        // schedule (every run before schedules existed) has it.
        let steps =
            parse(serde_json::json!({"epochs": 10, "steps_per_epoch": 10, "lr": 1.0})).unwrap();
        assert_eq!(steps.schedule, super::Schedule::Steps);
        let expect = |c: &TrainConfig, table: &[(usize, f64)]| {
            for &(step, want) in table {
                let got = c.lr_at(step);
                assert!((got - want).abs() < 1e-12, "step {step}: {got}, not {want}");
            }
        };
        expect(
            &steps,
            &[
                (0, 1.0),
                (29, 1.0),
                (30, 0.2),
                (49, 0.2),
                (50, 0.04),
                (80, 0.008),
                (99, 0.008),
            ],
        );
        // Cosine over 100 steps: warm-up over steps 0..2 from 0.01, the peak at step 2, half way
        // between peak and floor at step 51, the floor at the last planned step and after it.
        let cosine = parse(serde_json::json!({"epochs": 10, "steps_per_epoch": 10, "lr": 1.0, "schedule": "cosine"})).unwrap();
        expect(
            &cosine,
            &[
                (0, 0.01),
                (1, 0.505),
                (2, 1.0),
                (51, 0.505),
                (100, 0.01),
                (150, 0.01),
            ],
        );
        assert!(
            (2..100).all(|s| cosine.lr_at(s + 1) <= cosine.lr_at(s)),
            "not decreasing"
        );
        let err = parse(serde_json::json!({"schedule": "linear"})).unwrap_err();
        assert!(err.contains("unknown variant `linear`"), "{err}");
    }

    #[test]
    fn the_veil_reads_as_a_strength_and_old_booleans_still_read() {
        let default = parse(serde_json::json!({})).unwrap();
        assert_eq!((default.veil, default.veil_share), (1.0, 1.0));
        assert!(default.veil_fog);
        assert!(
            !parse(serde_json::json!({"veil_fog": false}))
                .unwrap()
                .veil_fog
        );
        // Written out only where it differs from the default, so older run configs compare equal.
        let saved = serde_json::to_value(&default).unwrap();
        assert!(saved.get("veil").is_none() && saved.get("veil_share").is_none());
        assert_eq!(parse(serde_json::json!({"veil": false})).unwrap().veil, 0.0);
        assert_eq!(parse(serde_json::json!({"veil": true})).unwrap(), default);
        let faint = parse(serde_json::json!({"veil": 0.4, "veil_share": 0.3})).unwrap();
        assert_eq!((faint.veil, faint.veil_share), (0.4, 0.3));
        let saved = serde_json::to_string(&faint).unwrap();
        assert_eq!(serde_json::from_str::<TrainConfig>(&saved).unwrap(), faint);
        for bad in [
            serde_json::json!({"veil": 1.5}),
            serde_json::json!({"veil_share": -0.1}),
        ] {
            assert!(parse(bad).unwrap().validate().is_err());
        }
        assert!(parse(serde_json::json!({"veil": "faint"})).is_err());
    }
}
