//! Derain a picture: tiles → network → blended planar maps. Shared by the CLI and the page.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::backend::BrnBackend;
use crate::error::ModelError;
use crate::image::Picture;
use crate::network::Brn;
use crate::tiling::{ready_now, Tile, TilePlan, DEFAULT_OVERLAP};

/// How to run the network over a picture.
#[derive(Clone, Debug)]
pub struct DerainOptions {
    /// Stages T.
    pub stages: usize,
    /// Largest tile side in pixels; bounds peak memory.
    pub tile: usize,
    /// Overlap between tiles in pixels.
    pub overlap: usize,
    /// Also return the rain layer.
    pub rain_layer: bool,
    /// Also return every stage's estimates.
    pub all_stages: bool,
}

impl DerainOptions {
    /// Defaults for `stages`: 512-pixel tiles, no extra outputs.
    pub fn new(stages: usize) -> Self {
        Self {
            stages,
            tile: 512,
            overlap: DEFAULT_OVERLAP,
            rain_layer: false,
            all_stages: false,
        }
    }
}

/// Planar `[3, H, W]` outputs of a derain, in [0, 1] where the network is right.
#[derive(Clone, Debug, Default)]
pub struct Derained {
    /// The derained image: the last stage's background estimate.
    pub background: Vec<f32>,
    /// The extracted rain layer, when asked for and the network estimates one.
    pub rain: Option<Vec<f32>>,
    /// Every stage's background estimate, when asked for (Fig. 8 of the paper).
    pub background_stages: Vec<Vec<f32>>,
    /// Every stage's rain estimate, when asked for.
    pub rain_stages: Vec<Vec<f32>>,
}

impl Derained {
    /// Every map with its name, in one fixed order: the derained image, the rain layer, each
    /// stage's background, then each stage's rain. The CLI's file names and the page's views
    /// come from these names, never from positions.
    pub fn outputs(&self) -> impl Iterator<Item = (Output, &[f32])> {
        std::iter::once((Output::Background, self.background.as_slice()))
            .chain(self.rain.as_deref().map(|rain| (Output::Rain, rain)))
            .chain(numbered(
                self.background_stages.iter().map(Vec::as_slice),
                Output::StageBackground,
            ))
            .chain(numbered(
                self.rain_stages.iter().map(Vec::as_slice),
                Output::StageRain,
            ))
    }
}

/// Each stage's map (a blended map or a tile's tensor) named by `name(t)`, `t` from 1.
fn numbered<T>(
    maps: impl IntoIterator<Item = T>,
    name: fn(usize) -> Output,
) -> impl Iterator<Item = (Output, T)> {
    let named = maps.into_iter().enumerate();
    named.map(move |(t, map)| (name(t + 1), map))
}

/// Which map of a [`Derained`] an output is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The derained image: the last stage's background estimate.
    Background,
    /// The extracted rain layer.
    Rain,
    /// Stage `t`'s background estimate (from 1).
    StageBackground(usize),
    /// Stage `t`'s rain estimate (from 1).
    StageRain(usize),
}

impl Output {
    /// A stable name for programs (`derained`, `rain`, `stage3-background`, `stage3-rain`): the
    /// page's view keys.
    pub fn key(self) -> String {
        match self {
            Self::Background => "derained".into(),
            Self::Rain => "rain".into(),
            Self::StageBackground(t) => format!("stage{t}-background"),
            Self::StageRain(t) => format!("stage{t}-rain"),
        }
    }

    /// What a person reads (`Derained`, `Rain layer`, `Stage 3 background`, `Stage 3 rain`).
    pub fn label(self) -> String {
        match self {
            Self::Background => "Derained".into(),
            Self::Rain => "Rain layer".into(),
            Self::StageBackground(t) => format!("Stage {t} background"),
            Self::StageRain(t) => format!("Stage {t} rain"),
        }
    }

    /// What the CLI appends to the input's file name stem: nothing for the derained image,
    /// `_rain`, `_stage3_x`, `_stage3_r` (the paper's `x` and `r`).
    pub fn file_suffix(self) -> String {
        match self {
            Self::Background => String::new(),
            Self::Rain => "_rain".into(),
            Self::StageBackground(t) => format!("_stage{t}_x"),
            Self::StageRain(t) => format!("_stage{t}_r"),
        }
    }
}

/// Planar `[3, H, W]` pixels as a `[1, 3, H, W]` tensor.
pub fn to_tensor<B: Backend>(
    planar: Vec<f32>,
    width: usize,
    height: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(planar, [1, 3, height, width]), device)
}

/// A `[1, C, H, W]` tensor as planar pixels.
pub fn to_planar<B: Backend>(tensor: Tensor<B, 4>) -> Vec<f32> {
    planar_from_data(tensor.into_data())
}

/// A tensor's data (read back at once, or asynchronously) as planar f32 pixels.
fn planar_from_data(data: TensorData) -> Vec<f32> {
    data.convert::<f32>()
        .into_vec::<f32>()
        .expect("a float tensor converts to f32")
}

fn check_stages(options: &DerainOptions) -> Result<(), ModelError> {
    if options.stages == 0 {
        return Err(ModelError::InvalidConfig(
            "the number of stages T must be at least 1".into(),
        ));
    }
    Ok(())
}

/// The maps a derain of `model` with `options` gives, in the one order every tile carries them
/// (on this worker and on any other that runs [`tile_maps`]): the derained image, the rain
/// layer (when asked for and the network estimates one), then with `all_stages` each stage's
/// background and each stage's rain. Computed once; blending and [`Derained`] go by its names.
pub fn layout<B: Backend>(model: &Brn<B>, options: &DerainOptions) -> Vec<Output> {
    let rain = has_rain(model);
    let mut layout = vec![Output::Background];
    if rain && (options.rain_layer || options.all_stages) {
        layout.push(Output::Rain);
    }
    if options.all_stages {
        layout.extend((1..=options.stages).map(Output::StageBackground));
        if rain {
            layout.extend((1..=options.stages).map(Output::StageRain));
        }
    }
    layout
}

/// Whether `model` estimates a rain layer (a rain branch, or a residual mapping).
fn has_rain<B: Backend>(model: &Brn<B>) -> bool {
    model.rain.is_some() || model.config.mapping == crate::config::Mapping::Residual
}

/// The network's outputs for one tile, as `layout` names them.
fn tile_outputs<B: BrnBackend>(
    model: &Brn<B>,
    pixels: Vec<f32>,
    tile: &Tile,
    options: &DerainOptions,
    layout: &[Output],
    device: &B::Device,
) -> Vec<Tensor<B, 4>> {
    let input = to_tensor::<B>(pixels, tile.width, tile.height, device);
    let stages = model.run(input, options.stages, options.all_stages);
    let mut named: Vec<(Output, Tensor<B, 4>)> =
        std::iter::once((Output::Background, stages.background))
            .chain(stages.rain.map(|rain| (Output::Rain, rain)))
            .chain(numbered(stages.background_stages, Output::StageBackground))
            .chain(numbered(stages.rain_stages, Output::StageRain))
            .collect();
    layout
        .iter()
        .map(|output| {
            let at = named.iter().position(|(name, _)| name == output);
            // The layout is made from the same network and options as the run.
            named
                .swap_remove(at.expect("the run gives every map of its layout"))
                .1
        })
        .collect()
}

impl Derained {
    /// The blended maps of a derain, each put where its name in `layout` says.
    fn from_maps(layout: &[Output], maps: Vec<Vec<f32>>) -> Self {
        let mut derained = Self::default();
        for (&output, map) in layout.iter().zip(maps) {
            match output {
                Output::Background => derained.background = map,
                Output::Rain => derained.rain = Some(map),
                // The layout numbers the stages in order, so pushing keeps stage t at t - 1.
                Output::StageBackground(_) => derained.background_stages.push(map),
                Output::StageRain(_) => derained.rain_stages.push(map),
            }
        }
        derained
    }
}

/// The network's planar maps for one tile's planar `[3, height, width]` pixels, in the order of
/// [`layout`]: what a Web Worker that holds the same weights computes for the worker that
/// shares out the tiles ([`derain_shared`]).
pub fn tile_maps<B: BrnBackend>(
    model: &Brn<B>,
    pixels: Vec<f32>,
    width: usize,
    height: usize,
    options: &DerainOptions,
    device: &B::Device,
) -> Result<Vec<Vec<f32>>, ModelError> {
    check_stages(options)?;
    if pixels.len() != 3 * width * height {
        return Err(ModelError::InvalidConfig(format!(
            "a tile of {width}x{height} RGB pixels needs {} values, not {}",
            3 * width * height,
            pixels.len()
        )));
    }
    let tile = Tile {
        x: 0,
        y: 0,
        width,
        height,
    };
    let layout = layout(model, options);
    Ok(planar_maps(model, pixels, &tile, options, &layout, device))
}

/// [`tile_outputs`] read back at once, as planar maps.
fn planar_maps<B: BrnBackend>(
    model: &Brn<B>,
    pixels: Vec<f32>,
    tile: &Tile,
    options: &DerainOptions,
    layout: &[Output],
    device: &B::Device,
) -> Vec<Vec<f32>> {
    let outputs = tile_outputs(model, pixels, tile, options, layout, device);
    outputs.into_iter().map(to_planar).collect()
}

/// Run `model` over `picture` tile by tile; `progress(done, total)` returns false to cancel.
/// The blocking form of [`derain_shared`] (the CLI's): the same loop, every await ready at once.
pub fn derain<B: BrnBackend>(
    model: &Brn<B>,
    picture: &Picture,
    options: &DerainOptions,
    device: &B::Device,
    mut progress: impl FnMut(usize, usize) -> bool,
) -> Result<Derained, ModelError> {
    let layout = layout(model, options);
    ready_now(derain_shared(
        model,
        picture,
        options,
        1,
        |pixels, tile| {
            let maps = planar_maps(model, pixels, tile, options, &layout, device);
            core::future::ready(Ok(maps))
        },
        |done, total| core::future::ready(progress(done, total)),
    ))
}

/// [`derain`] for backends that can only read results back asynchronously (WebGPU in the
/// browser; the page's single worker). `progress(done, total)` resolves to false to cancel;
/// awaiting it between tiles also lets the caller's event loop run.
pub async fn derain_async<B, P, F>(
    model: &Brn<B>,
    picture: &Picture,
    options: &DerainOptions,
    device: &B::Device,
    progress: P,
) -> Result<Derained, ModelError>
where
    B: BrnBackend,
    P: FnMut(usize, usize) -> F,
    F: core::future::Future<Output = bool>,
{
    let layout = layout(model, options);
    let run_tile = |pixels, tile: &Tile| {
        let outputs = tile_outputs(model, pixels, tile, options, &layout, device);
        async move {
            let mut maps = Vec::with_capacity(outputs.len());
            for tensor in outputs {
                let data = tensor
                    .into_data_async()
                    .await
                    .map_err(|e| ModelError::Device(format!("{e:?}")))?;
                maps.push(planar_from_data(data));
            }
            Ok(maps)
        }
    };
    derain_shared(model, picture, options, 1, run_tile, progress).await
}

/// The one tile loop of every derain: [`derain`] with the network run by `run_tile(pixels,
/// tile)`, up to `concurrency` tiles at once (the page's CPU fallback sends them to other Web
/// Workers, each computing [`tile_maps`] with the same weights). Each tile's maps must come in
/// the order of [`layout`]; a tile that comes back otherwise is a [`ModelError::Protocol`]
/// fault. The tiles are blended in plan order, so the result is the same bit for bit at any
/// concurrency. `model` gives the outputs' layout.
pub async fn derain_shared<B, R, RF, P, PF>(
    model: &Brn<B>,
    picture: &Picture,
    options: &DerainOptions,
    concurrency: usize,
    mut run_tile: R,
    progress: P,
) -> Result<Derained, ModelError>
where
    B: Backend,
    R: FnMut(Vec<f32>, &Tile) -> RF,
    RF: core::future::Future<Output = Result<Vec<Vec<f32>>, ModelError>>,
    P: FnMut(usize, usize) -> PF,
    PF: core::future::Future<Output = bool>,
{
    check_stages(options)?;
    let plan = TilePlan::new(picture.width, picture.height, options.tile, options.overlap);
    let layout = layout(model, options);
    let expected = layout.len();
    let maps = plan
        .run_async(
            &picture.rgb,
            concurrency,
            |pixels, tile| {
                let area = tile.width * tile.height;
                let maps = run_tile(pixels, tile);
                async move {
                    let maps = maps.await?;
                    // Maps from elsewhere (another worker) must have the layout blending needs.
                    if maps.len() != expected || maps.iter().any(|m| m.len() != 3 * area) {
                        return Err(ModelError::Protocol(format!(
                            "a tile came back as {} maps of {:?} values, not {expected} of {}",
                            maps.len(),
                            maps.iter().map(Vec::len).collect::<Vec<_>>(),
                            3 * area
                        )));
                    }
                    Ok(maps)
                }
            },
            progress,
        )
        .await?;
    Ok(Derained::from_maps(&layout, maps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrnConfig;
    use crate::tiling::late;
    use burn_flex::Flex;

    /// The layout names every map a derain returns, in the order [`Derained::outputs`] lists
    /// them (by which the CLI names files and the page its views), for every preset of the
    /// family (with and without a rain branch, direct and residual mappings) and each choice
    /// of extra outputs; and it holds as many maps as the options ask of that network.
    #[test]
    fn the_layout_names_what_a_derain_returns() {
        let device = Default::default();
        let picture = Picture {
            width: 12,
            height: 10,
            rgb: vec![0.5; 3 * 12 * 10],
            alpha: None,
            depth: crate::image::BitDepth::Eight,
            gray: false,
        };
        for name in BrnConfig::PRESETS {
            let model: Brn<Flex> = BrnConfig::preset(name)
                .unwrap()
                .with_stages(2)
                .init(&device)
                .unwrap();
            for (rain_layer, all_stages) in [(false, false), (true, false), (false, true)] {
                let options = DerainOptions {
                    rain_layer,
                    all_stages,
                    ..DerainOptions::new(2)
                };
                let layout = layout(&model, &options);
                let out = derain(&model, &picture, &options, &device, |_, _| true).unwrap();
                let named: Vec<Output> = out.outputs().map(|(name, _)| name).collect();
                assert_eq!(named, layout, "{name} {options:?}");
                let rain = has_rain(&model) && (rain_layer || all_stages);
                let stages = if all_stages {
                    2 * (1 + has_rain(&model) as usize)
                } else {
                    0
                };
                assert_eq!(
                    layout.len(),
                    1 + rain as usize + stages,
                    "{name} {options:?}"
                );
            }
        }
    }

    /// The page's CPU workers: tiles computed by [`tile_maps`] (another worker's share) and
    /// handed back late and out of order through [`derain_shared`] give exactly what the one-
    /// worker [`derain`] gives (the reference), every output included; a worker's malformed
    /// answer is an error, not a panic.
    #[test]
    fn shared_tiles_give_what_one_worker_gives() {
        let device = Default::default();
        let model: Brn<Flex> = BrnConfig::brn().with_stages(2).init(&device).unwrap();
        let (width, height) = (70, 52);
        let picture = Picture {
            width,
            height,
            rgb: (0..3 * width * height)
                .map(|i| ((i * 37) % 255) as f32 / 255.0)
                .collect(),
            alpha: None,
            depth: crate::image::BitDepth::Eight,
            gray: false,
        };
        let options = DerainOptions {
            tile: 32,
            overlap: 12,
            rain_layer: true,
            all_stages: true,
            ..DerainOptions::new(2)
        };
        let one = derain(&model, &picture, &options, &device, |_, _| true).unwrap();
        let tiles = TilePlan::new(width, height, options.tile, options.overlap)
            .tiles
            .len();
        assert!(tiles >= 6, "{tiles} tiles");
        let mut index = 0;
        let shared = ready_now(derain_shared(
            &model,
            &picture,
            &options,
            4,
            |pixels, tile| {
                index += 1;
                let maps = tile_maps(&model, pixels, tile.width, tile.height, &options, &device);
                late(maps, 2 * (tiles - index))
            },
            |_, _| core::future::ready(true),
        ))
        .unwrap();
        let bits = |maps: Vec<&Vec<f32>>| -> Vec<u32> {
            maps.into_iter().flatten().map(|v| v.to_bits()).collect()
        };
        fn all(d: &Derained) -> Vec<&Vec<f32>> {
            let mut maps = vec![&d.background, d.rain.as_ref().unwrap()];
            maps.extend(&d.background_stages);
            maps.extend(&d.rain_stages);
            maps
        }
        assert_eq!(all(&one).len(), 2 + 2 * 2);
        assert_eq!(bits(all(&one)), bits(all(&shared)));

        let short = ready_now(derain_shared(
            &model,
            &picture,
            &options,
            2,
            |_, _| core::future::ready(Ok(vec![vec![0.0; 3]])),
            |_, _| core::future::ready(true),
        ));
        assert!(matches!(short, Err(ModelError::Protocol(_))), "{short:?}");
    }
}
