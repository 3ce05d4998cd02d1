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

/// Sort the blended maps of [`tile_outputs`] into a [`Derained`].
fn assemble<B: Backend>(
    mut maps: Vec<Vec<f32>>,
    model: &Brn<B>,
    options: &DerainOptions,
) -> Derained {
    let mut rest = maps.split_off(1);
    let background = maps.pop().expect("the background map");
    let want_rain = options.rain_layer || options.all_stages;
    let has_rain = model.rain.is_some() || model.config.mapping == crate::config::Mapping::Residual;
    let rain = (want_rain && has_rain).then(|| rest.remove(0));
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
        |pixels, tile| {
            let outputs = tile_outputs(model, pixels, tile, options, device);
            Ok(outputs.into_iter().map(to_planar).collect())
        },
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
    mut progress: P,
) -> Result<Derained, ModelError>
where
    B: BrnBackend,
    P: FnMut(usize, usize) -> F,
    F: core::future::Future<Output = bool>,
{
    check_stages(options)?;
    let plan = TilePlan::new(picture.width, picture.height, options.tile, options.overlap);
    let maps = plan
        .run_async(
            &picture.rgb,
            |pixels, tile| {
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
            },
            &mut progress,
        )
        .await?;
    Ok(assemble(maps, model, options))
}
