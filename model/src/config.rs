//! One configuration for the whole family the paper studies.
//!
//! | paper name        | preset                      |
//! |-------------------|-----------------------------|
//! | BRN               | [`BrnConfig::brn`]          |
//! | BRN-GRU           | [`BrnConfig::brn_gru`]      |
//! | BRN r→x / x→r     | [`BrnConfig::brn_r_to_x`] / [`BrnConfig::brn_x_to_r`] |
//! | CRN               | [`BrnConfig::crn`]          |
//! | SRN (= PReNet)    | [`BrnConfig::prenet`]       |
//! | SRN+ (18 ResBlocks) | [`BrnConfig::srn_plus`]   |
//! | SRN-LSTM / SRN-GRU (direct mapping) | [`BrnConfig::srn_lstm`] / [`BrnConfig::srn_gru`] |
//! | SRN_x (input x only) | [`BrnConfig::srn_x`]     |
//! | PRN (no recurrent layer) | [`BrnConfig::prn`]   |

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// The recurrent layer of a branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// Convolutional LSTM (the paper's default).
    Lstm,
    /// Convolutional GRU (SRN-GRU, BRN-GRU).
    Gru,
    /// No recurrent layer: the ResBlocks take the input features directly (PRN).
    None,
}

/// Which hidden states cross between the rain branch F_r and the background branch F_x.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coupling {
    /// Bilateral LSTMs: F_r sees h_x of the previous stage, F_x sees h_r of this stage (BRN).
    Bilateral,
    /// Only F_x sees h_r (BRN r→x).
    RainToBackground,
    /// Only F_r sees h_x (BRN x→r).
    BackgroundToRain,
    /// No cross links: two independent recurrent branches (CRN), or a single branch (SRN).
    None,
}

/// What the background branch's output conv predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mapping {
    /// `x = conv(features)`: the background directly (BRN, SRN-LSTM).
    Direct,
    /// `x = y + conv(features)`: the rain residual, subtracted from the input (SRN = PReNet).
    Residual,
}

/// The architecture of one member of the BRN family, and its stage count T.
#[derive(Config, Debug, PartialEq)]
pub struct BrnConfig {
    /// Whether a rain branch F_r estimates the rain layer `r` that F_x then takes as input.
    #[config(default = true)]
    pub rain_branch: bool,
    /// Cross links between the two branches' recurrent states.
    #[config(default = "Coupling::Bilateral")]
    pub coupling: Coupling,
    /// The recurrent layer of every branch.
    #[config(default = "CellKind::Lstm")]
    pub cell: CellKind,
    /// Direct or residual mapping of the background branch.
    #[config(default = "Mapping::Direct")]
    pub mapping: Mapping,
    /// Whether every stage sees the rainy input `y` (false: SRN_x, stages see only their last estimate).
    #[config(default = true)]
    pub input_image: bool,
    /// ResBlocks of the background branch F_x.
    #[config(default = 5)]
    pub background_resblocks: usize,
    /// ResBlocks of the rain branch F_r (the published BRN uses 3).
    #[config(default = 3)]
    pub rain_resblocks: usize,
    /// Feature channels of every layer.
    #[config(default = 32)]
    pub channels: usize,
    /// Number of stages T (parameters are shared across stages).
    #[config(default = 8)]
    pub stages: usize,
}

impl BrnConfig {
    /// BRN as published. T = 8 is the authors' scripts' default, which reproduces the paper's numbers.
    pub fn brn() -> Self {
        Self::new()
    }

    /// BRN with bilateral GRUs.
    pub fn brn_gru() -> Self {
        Self::new().with_cell(CellKind::Gru)
    }

    /// BRN with information only from F_r to F_x.
    pub fn brn_r_to_x() -> Self {
        Self::new().with_coupling(Coupling::RainToBackground)
    }

    /// BRN with information only from F_x to F_r.
    pub fn brn_x_to_r() -> Self {
        Self::new().with_coupling(Coupling::BackgroundToRain)
    }

    /// CRN: two coupled SRNs with individual LSTMs.
    pub fn crn() -> Self {
        Self::new().with_coupling(Coupling::None)
    }

    /// SRN with residual mapping, LSTM and input `cat[y, x]`: the paper's SRN, the authors' PReNet.
    pub fn prenet() -> Self {
        Self::new()
            .with_rain_branch(false)
            .with_coupling(Coupling::None)
            .with_mapping(Mapping::Residual)
            .with_rain_resblocks(0)
            .with_stages(6)
    }

    /// SRN+: SRN with 18 ResBlocks.
    pub fn srn_plus() -> Self {
        Self::prenet().with_background_resblocks(18)
    }

    /// SRN-LSTM: SRN learning the direct mapping.
    pub fn srn_lstm() -> Self {
        Self::prenet().with_mapping(Mapping::Direct)
    }

    /// SRN-GRU: SRN-LSTM with a GRU.
    pub fn srn_gru() -> Self {
        Self::srn_lstm().with_cell(CellKind::Gru)
    }

    /// SRN_x: SRN whose stages see only the previous estimate `x`, not `y`.
    pub fn srn_x() -> Self {
        Self::prenet().with_input_image(false)
    }

    /// PReNet with a GRU (the authors' `Ablation_PReNet6_GRU` checkpoint).
    pub fn prenet_gru() -> Self {
        Self::prenet().with_cell(CellKind::Gru)
    }

    /// PRN: PReNet without the recurrent layer.
    pub fn prn() -> Self {
        Self::prenet().with_cell(CellKind::None)
    }

    /// The preset of a name as the command line spells it (`brn`, `prenet`, ...).
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        Ok(match name {
            "brn" => Self::brn(),
            "brn-gru" => Self::brn_gru(),
            "brn-r2x" => Self::brn_r_to_x(),
            "brn-x2r" => Self::brn_x_to_r(),
            "crn" => Self::crn(),
            "prenet" | "srn" => Self::prenet(),
            "srn-plus" => Self::srn_plus(),
            "srn-lstm" => Self::srn_lstm(),
            "srn-gru" => Self::srn_gru(),
            "srn-x" => Self::srn_x(),
            "prenet-gru" => Self::prenet_gru(),
            "prn" => Self::prn(),
            other => {
                return Err(ModelError::InvalidConfig(format!(
                    "unknown architecture '{other}'; known: {}",
                    Self::PRESETS.join(", ")
                )))
            }
        })
    }

    /// The names [`BrnConfig::preset`] accepts.
    pub const PRESETS: [&'static str; 12] = [
        "brn",
        "brn-gru",
        "brn-r2x",
        "brn-x2r",
        "crn",
        "prenet",
        "prenet-gru",
        "srn-plus",
        "srn-lstm",
        "srn-gru",
        "srn-x",
        "prn",
    ];

    /// The preset name of this architecture (any T), or its full JSON where it is no preset.
    pub fn describe(&self) -> String {
        let name = Self::PRESETS.iter().find(|name| {
            Self::preset(name).is_ok_and(|preset| preset.with_stages(self.stages) == *self)
        });
        match name {
            Some(name) => format!("{name} (T = {})", self.stages),
            None => serde_json::to_string(self).unwrap_or_else(|_| format!("{self:?}")),
        }
    }

    /// Refuse configurations that describe no network.
    pub fn validate(&self) -> Result<(), ModelError> {
        let fail = |msg: &str| Err(ModelError::InvalidConfig(msg.to_string()));
        if self.stages == 0 {
            return fail("the number of stages T must be at least 1");
        }
        if self.channels == 0 {
            return fail("channels must be at least 1");
        }
        if !self.rain_branch && self.coupling != Coupling::None {
            return fail("a coupling between branches needs the rain branch (rain_branch = true)");
        }
        if self.cell == CellKind::None && self.coupling != Coupling::None {
            return fail(
                "coupling links recurrent states, so it needs a recurrent cell (lstm or gru)",
            );
        }
        Ok(())
    }

    /// Whether F_r's recurrent layer also sees F_x's hidden state.
    pub fn rain_sees_background(&self) -> bool {
        matches!(
            self.coupling,
            Coupling::Bilateral | Coupling::BackgroundToRain
        )
    }

    /// Whether F_x's recurrent layer also sees F_r's hidden state.
    pub fn background_sees_rain(&self) -> bool {
        matches!(
            self.coupling,
            Coupling::Bilateral | Coupling::RainToBackground
        )
    }

    /// Image channels into the rain branch's input layer: `cat[y, r]` or `r`.
    pub fn rain_in_channels(&self) -> usize {
        if self.input_image {
            6
        } else {
            3
        }
    }

    /// Image channels into the background branch's input layer: `cat[y, x(, r)]`.
    pub fn background_in_channels(&self) -> usize {
        3 + if self.input_image { 3 } else { 0 } + if self.rain_branch { 3 } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_round_trip_through_json() {
        for name in BrnConfig::PRESETS {
            let config = BrnConfig::preset(name).unwrap();
            config.validate().unwrap();
            let json = serde_json::to_string(&config).unwrap();
            let back: BrnConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(config, back, "{name}");
        }
    }

    #[test]
    fn invalid_configs_are_refused_with_a_reason() {
        let err = BrnConfig::brn().with_stages(0).validate().unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
        let err = BrnConfig::prenet()
            .with_coupling(Coupling::Bilateral)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("rain branch"), "{err}");
        assert!(BrnConfig::preset("resnet").is_err());
    }
}
