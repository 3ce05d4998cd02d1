//! Derain a picture: tiles → network → blended planar maps. Shared by the CLI and the page.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::backend::BrnBackend;
use crate::error::ModelError;
use crate::image::Picture;
use crate::network::Brn;
use crate::tiling::{Tile, TilePlan, DEFAULT_OVERLAP};

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
            .chain(stages(&self.background_stages, Output::StageBackground))
            .chain(stages(&self.rain_stages, Output::StageRain))
    }
}

/// Each stage's map named by `name(t)`, `t` from 1.
fn stages(maps: &[Vec<f32>], name: fn(usize) -> Output) -> impl Iterator<Item = (Output, &[f32])> {
    let named = maps.iter().enumerate();
    named.map(move |(t, map)| (name(t + 1), map.as_slice()))
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

/// The network's outputs for one tile, in the order [`assemble`] expects: background, the rain
/// layer (when asked for and the network has one), then every stage's backgrounds and rains.
fn tile_outputs<B: BrnBackend>(
    model: &Brn<B>,
    pixels: Vec<f32>,
    tile: &Tile,
    options: &DerainOptions,
    device: &B::Device,
) -> Vec<Tensor<B, 4>> {
    let input = to_tensor::<B>(pixels, tile.width, tile.height, device);
    let out = model.run(input, options.stages, options.all_stages);
    let mut maps = vec![out.background];
    if options.rain_layer || options.all_stages {
        maps.extend(out.rain);
    }
    maps.extend(out.background_stages);
    maps.extend(out.rain_stages);
    maps
}

/// Whether `model` estimates a rain layer (a rain branch, or a residual mapping).
fn has_rain<B: Backend>(model: &Brn<B>) -> bool {
    model.rain.is_some() || model.config.mapping == crate::config::Mapping::Residual
}

/// How many maps [`tile_outputs`] gives per tile.
fn output_count<B: Backend>(model: &Brn<B>, options: &DerainOptions) -> usize {
    let rain = has_rain(model);
    let want_rain = options.rain_layer || options.all_stages;
    let stages = if options.all_stages {
        options.stages * (1 + rain as usize)
    } else {
        0
    };
    1 + (want_rain && rain) as usize + stages
}

/// Sort the blended maps of [`tile_outputs`] into a [`Derained`].
fn assemble<B: Backend>(
    mut maps: Vec<Vec<f32>>,
    model: &Brn<B>,
    options: &DerainOptions,
) -> Derained {
    let mut rest = maps.split_off(1);
    let background = maps.pop().expect("the background map");
    let want_rain = options.rain_layer || options.all_stages;
    let rain = (want_rain && has_rain(model)).then(|| rest.remove(0));
    let (background_stages, rain_stages) = if options.all_stages {
        let rain_stages = rest.split_off(options.stages);
        (rest, rain_stages)
    } else {
        (Vec::new(), Vec::new())
    };
    Derained {
        background,
        rain,
        background_stages,
        rain_stages,
    }
}

/// The network's planar maps for one tile's planar `[3, height, width]` pixels, in the order
/// the blending of [`derain_shared`] expects: what a Web Worker that holds the same weights
/// computes for the worker that shares out the tiles.
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
    let outputs = tile_outputs(model, pixels, &tile, options, device);
    Ok(outputs.into_iter().map(to_planar).collect())
}

/// Run `model` over `picture` tile by tile; `progress(done, total)` returns false to cancel.
pub fn derain<B: BrnBackend>(
    model: &Brn<B>,
    picture: &Picture,
    options: &DerainOptions,
    device: &B::Device,
    progress: impl FnMut(usize, usize) -> bool,
) -> Result<Derained, ModelError> {
    check_stages(options)?;
    let plan = TilePlan::new(picture.width, picture.height, options.tile, options.overlap);
    let maps = plan.run(
        &picture.rgb,
        |pixels, tile| tile_maps(model, pixels, tile.width, tile.height, options, device),
        progress,
    )?;
    Ok(assemble(maps, model, options))
}

/// [`derain`] for backends that can only read results back asynchronously (WebGPU in the
/// browser). `progress(done, total)` resolves to false to cancel; awaiting it between tiles
/// also lets the caller's event loop run.
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
    let run_tile = |pixels, tile: &Tile| {
        let outputs = tile_outputs(model, pixels, tile, options, device);
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

/// [`derain`] with the network run by `run_tile(pixels, tile)`, up to `concurrency` tiles at
/// once (the page's CPU fallback sends them to other Web Workers, each computing
/// [`tile_maps`] with the same weights). The tiles are blended in plan order, so the result
/// is the same bit for bit at any concurrency. `model` gives the outputs' layout.
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
    let expected = output_count(model, options);
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
                        return Err(ModelError::Device(format!(
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
    Ok(assemble(maps, model, options))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrnConfig;
    use crate::tiling::{late, ready_now};
    use burn_flex::Flex;

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
        assert!(matches!(short, Err(ModelError::Device(_))), "{short:?}");
    }
}
