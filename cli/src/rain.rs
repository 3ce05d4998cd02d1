//! The rain presets by name, and a mix of them ready to make rainy images: drawn rain
//! ([`crate::synth`]: our own streak model) and rendered rain ([`crate::rendered`]: layers of
//! Garg and Nayar's streak database, loaded once for the mix when one of its presets needs
//! them).

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::Rng;

use crate::rendered::{add_rendered_rain, RenderedConfig, StreakBank};
use crate::synth::{add_rain, RainConfig};

/// One rain preset.
#[derive(Clone, Debug, PartialEq)]
pub enum Preset {
    /// Drawn by our streak model (`light`, `heavy`, `varied`, `depth`, `splash`, and `none`).
    Drawn(RainConfig),
    /// Rendered from the streak database (`rendered-light`, `rendered-heavy`).
    Rendered(RenderedConfig),
}

impl Preset {
    /// The presets that rain, in the order the documentation lists them (a contact sheet's rows).
    pub const RAINS: [&'static str; 7] = [
        "light",
        "heavy",
        "varied",
        "depth",
        "splash",
        "rendered-light",
        "rendered-heavy",
    ];

    /// Every name [`Preset::named`] knows: the presets that rain, then `none`.
    pub const NAMES: [&'static str; 8] = [
        "light",
        "heavy",
        "varied",
        "depth",
        "splash",
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

    /// The same preset without its veil, and without its fog where `fog` says so (its streaks
    /// drawn alike).
    fn dry(self, fog: bool) -> Self {
        match self {
            Self::Drawn(config) => Self::Drawn(RainConfig {
                haze: (0.0, 0.0),
                fog: if fog { (0.0, 0.0) } else { config.fog },
                ..config
            }),
            Self::Rendered(config) => Self::Rendered(RenderedConfig {
                haze: (0.0, 0.0),
                ..config
            }),
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
    /// The same presets without their veil (and fog), drawn instead for the share of draws
    /// that [`RainMix::with_veil`] takes it off (none: every draw keeps its veil).
    dry: Option<(Vec<Preset>, f64)>,
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
        Ok(Self {
            presets,
            dry: None,
            bank,
        })
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
    pub fn without_veil(self) -> Self {
        self.with_veil(0.0, 1.0, true)
    }

    /// The same presets with their veil ranges (and their fog's, where `fog`) scaled by
    /// `strength` (0: none, 1: as they are), kept on a `share` of the draws (the others draw
    /// the same streaks without them; 1: all). Both at 1 leave the mix, and its random draws,
    /// as they were; so does any setting for a preset it leaves unchanged.
    pub fn with_veil(mut self, strength: f32, share: f64, fog: bool) -> Self {
        let scale = |range: &mut (f32, f32)| *range = (range.0 * strength, range.1 * strength);
        for preset in &mut self.presets {
            match preset {
                Preset::Drawn(config) => {
                    scale(&mut config.haze);
                    if fog {
                        scale(&mut config.fog);
                    }
                }
                Preset::Rendered(config) => scale(&mut config.haze),
            }
        }
        if share < 1.0 && strength > 0.0 {
            let dry = self.presets.iter().map(|p| p.clone().dry(fog)).collect();
            self.dry = Some((dry, share));
        }
        self
    }

    /// The presets that rain (validation scores rain removal, not `none`), sharing this
    /// mix's streak layers.
    pub fn raining(&self) -> Self {
        // The dry list keeps the places of the presets that rain, so the two stay aligned.
        Self {
            presets: self.presets.iter().filter(|p| p.rains()).cloned().collect(),
            dry: self.dry.as_ref().map(|(dry, share)| {
                let kept = self.presets.iter().zip(dry).filter(|(p, _)| p.rains());
                (kept.map(|(_, d)| d.clone()).collect(), *share)
            }),
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
        let mut preset = &self.presets[k];
        // Drawn only where a share is set and the preset has something to take off, so other
        // mixes and presets keep their draws.
        if let Some((dry, share)) = &self.dry {
            if dry[k] != *preset && !rng.random_bool(*share) {
                preset = &dry[k];
            }
        }
        match (preset, &self.bank) {
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

    /// The drawn presets `names` (no streak folder needed), and a grey 24x24 photo.
    fn drawn_mix(names: &[&str]) -> (RainMix, Vec<f32>, usize, usize) {
        let mix = RainMix::new(names, Path::new("/nonexistent/streak-folder")).unwrap();
        (mix, vec![0.5f32; 3 * 24 * 24], 24, 24)
    }

    #[test]
    fn a_veil_share_keeps_the_veil_on_that_share_of_draws_and_scales_it() {
        use crate::synth::rng_for;
        let (full, clean, w, h) = drawn_mix(&["heavy", "light"]);
        let dry = drawn_mix(&["heavy", "light"]).0.without_veil();
        // Strength and share at 1 change nothing, draws included.
        let same = drawn_mix(&["heavy", "light"]).0.with_veil(1.0, 1.0, true);
        for k in 0..2 {
            for i in 0..4 {
                assert_eq!(
                    same.add(k, &clean, w, h, &mut rng_for(7, i)),
                    full.add(k, &clean, w, h, &mut rng_for(7, i))
                );
            }
        }
        // Half strength halves the ranges of the veil.
        let faint = drawn_mix(&["heavy"]).0.with_veil(0.5, 1.0, true);
        match (&faint.presets()[0], &full.presets()[0]) {
            (Preset::Drawn(f), Preset::Drawn(v)) => {
                assert_eq!(f.haze, (v.haze.0 * 0.5, v.haze.1 * 0.5));
                assert!(v.haze.1 > 0.0);
            }
            _ => unreachable!(),
        }
        // A share of 0.3: each heavy draw is either the veiled one or the dry one of the same
        // streaks (the share's coin comes first from the generator), about 30 % veiled;
        // light, which has no veil, draws as before.
        let rare = drawn_mix(&["heavy", "light"]).0.with_veil(1.0, 0.3, true);
        let mut veiled = 0;
        for i in 0..200 {
            let got = rare.add(0, &clean, w, h, &mut rng_for(9, i));
            let mut rng = rng_for(9, i);
            let keep = rng.random_bool(0.3);
            let want = if keep { &full } else { &dry }.add(0, &clean, w, h, &mut rng);
            assert_eq!(got, want, "draw {i}");
            veiled += usize::from(keep);
        }
        assert!((40..=80).contains(&veiled), "{veiled} of 200 veiled");
        assert_eq!(
            rare.add(1, &clean, w, h, &mut rng_for(3, 1)),
            full.add(1, &clean, w, h, &mut rng_for(3, 1))
        );
        assert_eq!(rare.raining().len(), 2);
    }

    #[test]
    fn a_veil_setting_that_keeps_the_fog_leaves_the_depth_preset_alone() {
        use crate::synth::rng_for;
        let (full, clean, w, h) = drawn_mix(&["heavy", "depth"]);
        let foggy = drawn_mix(&["heavy", "depth"]).0.with_veil(0.5, 0.3, false);
        match (&foggy.presets()[0], &foggy.presets()[1], &full.presets()[1]) {
            (Preset::Drawn(heavy), Preset::Drawn(depth), Preset::Drawn(defined)) => {
                assert!(heavy.haze.1 > 0.0 && heavy.haze.1 < 0.31);
                assert_eq!(depth, defined);
            }
            _ => unreachable!(),
        }
        // Depth draws as the unchanged mix does (no coin: nothing to take off).
        for i in 0..8 {
            assert_eq!(
                foggy.add(1, &clean, w, h, &mut rng_for(5, i)),
                full.add(1, &clean, w, h, &mut rng_for(5, i))
            );
        }
    }
}
