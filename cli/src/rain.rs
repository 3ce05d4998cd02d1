//! The rain presets by name, and a mix of them ready to make rainy images: drawn rain
//! ([`crate::synth`]: our own streak model) and rendered rain ([`crate::rendered`]: layers of
//! Garg and Nayar's streak database, loaded once for the mix when one of its presets needs
//! them).

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use rand::rngs::StdRng;

use crate::rendered::{add_rendered_rain, RenderedConfig, StreakBank};
use crate::synth::{add_rain, RainConfig};

/// One rain preset.
#[derive(Clone, Debug, PartialEq)]
pub enum Preset {
    /// Drawn by our streak model (`light`, `heavy`, `varied`, `depth`, and `none`).
    Drawn(RainConfig),
    /// Rendered from the streak database (`rendered-light`, `rendered-heavy`).
    Rendered(RenderedConfig),
}

impl Preset {
    /// The presets that rain, in the order the documentation lists them (a contact sheet's rows).
    pub const RAINS: [&'static str; 6] = [
        "light",
        "heavy",
        "varied",
        "depth",
        "rendered-light",
        "rendered-heavy",
    ];

    /// Every name [`Preset::named`] knows: the presets that rain, then `none`.
    pub const NAMES: [&'static str; 7] = [
        "light",
        "heavy",
        "varied",
        "depth",
        "rendered-light",
        "rendered-heavy",
        "none",
    ];

    /// A preset by name (one of [`Preset::NAMES`]).
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "rendered-light" => Some(Self::Rendered(RenderedConfig::light())),
            "rendered-heavy" => Some(Self::Rendered(RenderedConfig::heavy())),
            other => RainConfig::preset(other).map(Self::Drawn),
        }
    }

    /// Whether the preset adds any rain, veil or fog (`none` does not).
    pub fn rains(&self) -> bool {
        match self {
            Self::Drawn(config) => config.rains(),
            Self::Rendered(_) => true,
        }
    }

    /// Whether the preset needs the streak database.
    pub fn is_rendered(&self) -> bool {
        matches!(self, Self::Rendered(_))
    }
}

/// Presets ready to make rain: with the streak layers loaded if one of them is rendered
/// (shared by the mixes made from this one, never loaded twice).
pub struct RainMix {
    presets: Vec<Preset>,
    bank: Option<Arc<StreakBank>>,
}

impl RainMix {
    /// The named presets (unknown names are an error that lists the known ones), loading the
    /// streak layers of `streaks` only if a rendered preset is among them.
    pub fn new<S: AsRef<str>>(names: &[S], streaks: &Path) -> Result<Self> {
        let presets = names
            .iter()
            .map(|name| {
                let name = name.as_ref();
                Preset::named(name).ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown rain preset '{name}' (known: {})",
                        Preset::NAMES.join(", ")
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let bank = if presets.iter().any(Preset::is_rendered) {
            Some(Arc::new(StreakBank::load(streaks)?))
        } else {
            None
        };
        Ok(Self { presets, bank })
    }

    /// The mix's presets, in the order they were named.
    pub fn presets(&self) -> &[Preset] {
        &self.presets
    }

    /// How many presets the mix holds.
    pub fn len(&self) -> usize {
        self.presets.len()
    }

    /// Whether the mix holds no preset.
    pub fn is_empty(&self) -> bool {
        self.presets.is_empty()
    }

    /// The same presets without their veil of accumulation and their fog.
    pub fn without_veil(mut self) -> Self {
        for preset in &mut self.presets {
            match preset {
                Preset::Drawn(config) => {
                    config.haze = (0.0, 0.0);
                    config.fog = (0.0, 0.0);
                }
                Preset::Rendered(config) => config.haze = (0.0, 0.0),
            }
        }
        self
    }

    /// The presets that rain (validation scores rain removal, not `none`), sharing this
    /// mix's streak layers.
    pub fn raining(&self) -> Self {
        Self {
            presets: self.presets.iter().filter(|p| p.rains()).cloned().collect(),
            bank: self.bank.clone(),
        }
    }

    /// A clean planar RGB image `[3, H, W]` in [0, 1] made rainy with preset `k` of the mix.
    /// Returns (rainy, rain layer), the rain layer being `rainy - clean`.
    pub fn add(
        &self,
        k: usize,
        clean: &[f32],
        w: usize,
        h: usize,
        rng: &mut StdRng,
    ) -> (Vec<f32>, Vec<f32>) {
        match (&self.presets[k], &self.bank) {
            (Preset::Drawn(config), _) => add_rain(clean, w, h, config, rng),
            (Preset::Rendered(config), Some(bank)) => {
                add_rendered_rain(clean, w, h, config, bank, rng)
            }
            (Preset::Rendered(_), None) => {
                unreachable!("RainMix::new loads the streak layers for a rendered preset")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_named_and_only_none_is_dry() {
        for name in Preset::NAMES {
            assert!(Preset::named(name).is_some(), "{name}");
        }
        for name in Preset::RAINS {
            assert!(Preset::named(name).unwrap().rains(), "{name}");
        }
        assert!(!Preset::named("none").unwrap().rains());
        assert!(Preset::named("drizzle").is_none());
        assert_eq!(Preset::NAMES[..Preset::RAINS.len()], Preset::RAINS);
    }

    #[test]
    fn drawn_presets_need_no_streak_folder_and_rendered_ones_name_it() {
        let absent = Path::new("/nonexistent/streak-folder");
        let mix = RainMix::new(&["light", "none"], absent).unwrap();
        assert_eq!(mix.len(), 2);
        assert_eq!(mix.raining().len(), 1);
        let err = format!(
            "{:#}",
            RainMix::new(&["light", "rendered-light"], absent)
                .err()
                .unwrap()
        );
        assert!(err.contains("/nonexistent/streak-folder"), "{err}");
        let dry = RainMix::new(&["heavy", "depth"], absent)
            .unwrap()
            .without_veil();
        for preset in dry.presets() {
            match preset {
                Preset::Drawn(c) => {
                    assert!(c.haze == (0.0, 0.0) && c.fog == (0.0, 0.0) && c.rains())
                }
                Preset::Rendered(_) => unreachable!(),
            }
        }
        let err = format!(
            "{:#}",
            RainMix::new(&["light", "drizzle"], absent).err().unwrap()
        );
        assert!(
            err.contains("drizzle") && err.contains("rendered-heavy"),
            "{err}"
        );
    }
}
