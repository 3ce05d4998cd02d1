//! The stage loop of the paper's Eq. (5)–(8): BRN and every variant of [`BrnConfig`].

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::backend::BrnBackend;
use crate::branch::{Branch, BranchShape};
use crate::cell::{hidden_part, CellState};
use crate::config::{BrnConfig, CellKind, Mapping};
use crate::error::ModelError;

/// A member of the BRN family: an optional rain branch F_r and the background branch F_x.
#[derive(Module, Debug)]
pub struct Brn<B: Backend> {
    /// F_r: estimates the rain layer `r` (absent in SRN/PReNet/PRN).
    pub rain: Option<Branch<B>>,
    /// F_x: estimates the background `x`.
    pub background: Branch<B>,
    /// The architecture this network was built from.
    #[module(skip)]
    pub config: BrnConfig,
}

/// What a forward pass returns.
#[derive(Clone, Debug)]
pub struct Stages<B: Backend> {
    /// The final background `x^T`, `[N, 3, H, W]` (not clamped).
    pub background: Tensor<B, 4>,
    /// The final rain layer `r^T`, `[N, 3, H, W]`: F_r's estimate, or `y - x^T` for a single
    /// branch with residual mapping; `None` for a single branch with direct mapping.
    pub rain: Option<Tensor<B, 4>>,
    /// Every stage's background estimate `x^1..x^T` (empty unless asked for).
    pub background_stages: Vec<Tensor<B, 4>>,
    /// Every stage's rain estimate `r^1..r^T` where there is one (empty unless asked for).
    pub rain_stages: Vec<Tensor<B, 4>>,
}

impl BrnConfig {
    /// Build the network with freshly initialised parameters.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Brn<B>, ModelError> {
        self.validate()?;
        let rain = self.rain_branch.then(|| {
            Branch::new(
                BranchShape {
                    image_channels: self.rain_in_channels(),
                    channels: self.channels,
                    sees_other: self.rain_sees_background(),
                    cell: self.cell,
                    resblocks: self.rain_resblocks,
                },
                device,
            )
        });
        let background = Branch::new(
            BranchShape {
                image_channels: self.background_in_channels(),
                channels: self.channels,
                sees_other: self.background_sees_rain(),
                cell: self.cell,
                resblocks: self.background_resblocks,
            },
            device,
        );
        Ok(Brn {
            rain,
            background,
            config: self.clone(),
        })
    }
}

impl<B: BrnBackend> Brn<B> {
    /// Derain with the configured number of stages, keeping every stage's estimates.
    ///
    /// # Shapes
    /// - `rainy`: `[N, 3, H, W]`, RGB in [0, 1]
    /// - every tensor of the result: `[N, 3, H, W]`
    pub fn forward(&self, rainy: Tensor<B, 4>) -> Stages<B> {
        self.run(rainy, self.config.stages, true)
    }

    /// The stage loop with `stages` stages (T); parameters are shared, so any T ≥ 1 works.
    /// `keep_stages` keeps every stage's estimates (memory grows with T).
    ///
    /// # Shapes
    /// - `rainy`: `[N, 3, H, W]`, RGB in [0, 1]
    /// - every tensor of the result: `[N, 3, H, W]`
    pub fn run(&self, rainy: Tensor<B, 4>, stages: usize, keep_stages: bool) -> Stages<B> {
        let config = &self.config;

        // Both estimates start from the input.
        let mut background = rainy.clone();
        let mut rain = rainy.clone();
        // The recurrent states, `None` before the first stage: the zero state, whose products
        // the cells skip (the paper's h^0 = c^0 = 0).
        let mut rain_state: Option<CellState<B>> = None;
        let mut background_state: Option<CellState<B>> = None;
        let recurrent = config.cell != CellKind::None;
        let mut background_stages = Vec::new();
        let mut rain_stages = Vec::new();

        let hidden = |state: &Option<CellState<B>>| hidden_part(state.as_ref(), config.channels);
        let with_image = |images: Vec<Tensor<B, 4>>| {
            let mut all = Vec::with_capacity(3);
            if config.input_image {
                all.push(rainy.clone());
            }
            all.extend(images);
            Tensor::cat(all, 1)
        };

        for _ in 0..stages {
            if let Some(branch) = &self.rain {
                // r^t = F_r(y, r^{t-1}), its LSTM seeing h_x^{t-1}.
                let other =
                    (recurrent && config.rain_sees_background()).then(|| hidden(&background_state));
                let (estimate, state) = branch.forward(with_image(vec![rain]), rain_state, other);
                rain = estimate;
                rain_state = state;
                if keep_stages {
                    rain_stages.push(rain.clone());
                }
            }

            // x^t = F_x(y, x^{t-1}, r^t), its LSTM seeing h_r^t.
            let mut images = vec![background];
            if self.rain.is_some() {
                images.push(rain.clone());
            }
            let other = (recurrent && self.rain.is_some() && config.background_sees_rain())
                .then(|| hidden(&rain_state));
            let (estimate, state) =
                self.background
                    .forward(with_image(images), background_state, other);
            background = match config.mapping {
                Mapping::Direct => estimate,
                Mapping::Residual => rainy.clone() + estimate,
            };
            background_state = state;
            if keep_stages {
                background_stages.push(background.clone());
                if self.rain.is_none() && config.mapping == Mapping::Residual {
                    rain_stages.push(rainy.clone() - background.clone());
                }
            }
        }

        let rain = if self.rain.is_some() {
            Some(rain)
        } else {
            (config.mapping == Mapping::Residual).then(|| rainy - background.clone())
        };
        Stages {
            background,
            rain,
            background_stages,
            rain_stages,
        }
    }
}

impl<B: Backend> Brn<B> {
    /// Number of scalar parameters the forward pass uses.
    pub fn parameter_count(&self) -> usize {
        self.num_params()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_flex::Flex;

    type B = Flex;

    fn count(config: BrnConfig) -> usize {
        config
            .init::<B>(&Default::default())
            .unwrap()
            .parameter_count()
    }

    /// Parameter counts of Table IV of the paper (independent figures, printed in the paper).
    #[test]
    fn parameter_counts_match_table_iv() {
        assert_eq!(count(BrnConfig::prenet()), 168_963, "SRN");
        assert_eq!(count(BrnConfig::srn_plus()), 409_411, "SRN+");
        assert_eq!(count(BrnConfig::brn_gru()), 320_166, "BRN-GRU");
        assert_eq!(count(BrnConfig::brn()), 375_526, "BRN");
    }

    #[test]
    fn every_variant_runs_and_keeps_shapes() {
        let device = Default::default();
        let rainy = Tensor::<B, 4>::ones([1, 3, 9, 7], &device) * 0.5;
        for name in BrnConfig::PRESETS {
            let net = BrnConfig::preset(name)
                .unwrap()
                .with_stages(2)
                .init::<B>(&device)
                .unwrap();
            let out = net.forward(rainy.clone());
            assert_eq!(out.background.dims(), [1, 3, 9, 7], "{name}");
            assert_eq!(out.background_stages.len(), 2, "{name}");
            let has_rain = net.rain.is_some() || net.config.mapping == Mapping::Residual;
            assert_eq!(out.rain.is_some(), has_rain, "{name}");
            assert_eq!(
                out.rain_stages.len(),
                if has_rain { 2 } else { 0 },
                "{name}"
            );
        }
    }
}
