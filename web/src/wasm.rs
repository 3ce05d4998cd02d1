//! The JavaScript boundary, called from the page's Web Worker (`www/worker.js`): one
//! [`Engine`] per worker, on a WebGPU device created once and kept (the browser allows one
//! device setup per page) or on the CPU, holding its weights. Every error is a `JsError` with a
//! message a person can act on; nothing here panics on bad input.

use std::rc::Rc;

use burn_flex::Flex;
use burn_wgpu::{graphics::WebGpu, init_setup_async, RuntimeOptions, Wgpu, WgpuDevice};
use js_sys::{
    Array, Float32Array, Function, Object, Promise, Reflect, Uint8Array, Uint8ClampedArray,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use model::image::Picture;
use model::tiling::Tile;
use model::{Brn, DerainOptions, Derained, ModelError, Output};

use crate::{views, CPU_TILE, INPUT_VIEW, MAX_PIXELS, MAX_STAGE_VIEW_PIXELS};

/// Loaded weights on the engine's backend.
enum Network {
    Gpu(Brn<Wgpu>, WgpuDevice),
    Cpu(Brn<Flex>),
}

/// Side of the warm-up image: two stages on it run every kernel a longer run does.
const WARM_UP_SIDE: usize = 32;
/// Stages of the warm-up run.
const WARM_UP_STAGES: usize = 2;

/// The deraining engine of one Web Worker: its backend (a WebGPU device, or the CPU in
/// WebAssembly), the tile size that backend's limits allow, and the loaded weights.
#[wasm_bindgen]
pub struct Engine {
    gpu: Option<WgpuDevice>,
    adapter: String,
    tile: usize,
    network: Option<Rc<Network>>,
}

fn js_error(e: ModelError) -> JsError {
    JsError::new(&e.report())
}

/// A derain's failure as the promise rejects with it: a JS `Error` with the message a person
/// reads and `kind` ([`ModelError::kind`], e.g. `cancelled`) for the page's code.
fn rejection(e: ModelError) -> JsValue {
    let error = js_sys::Error::new(&e.report());
    set(&error, "kind", e.kind());
    error.into()
}

/// The SHA-256 of `bytes`, lowercase hex ([`crate::sha256_hex`]): the page checks the default
/// weights by it.
#[wasm_bindgen]
pub fn sha256(bytes: &[u8]) -> String {
    crate::sha256_hex(bytes)
}

/// The download at an amount below 100 % ([`crate::blend_png`]): `derained` (a derain's PNG)
/// `amount` (0 to 1) of the way from `input` (the photo file's bytes), blended in linear light.
#[wasm_bindgen(js_name = blendAmount)]
pub fn blend_amount(input: &[u8], derained: &[u8], amount: f32) -> Result<Uint8Array, JsError> {
    let png = crate::blend_png(input, derained, amount).map_err(js_error)?;
    Ok(Uint8Array::from(png.as_slice()))
}

/// The 8-bit blend table at `amount` (0 to 1; [`model::amount::table8`], 65,536 bytes: entry
/// `a * 256 + b` for input level `a`, derained level `b`): the page's view at an amount looks
/// its pixels up in it, so that it shows what the download at that amount holds.
#[wasm_bindgen(js_name = amountTable)]
pub fn amount_table(amount: f32) -> Uint8Array {
    Uint8Array::from(model::amount::table8(amount).as_slice())
}

fn set(object: &Object, key: &str, value: impl Into<JsValue>) {
    // Setting a property on a plain object we just made cannot fail.
    let _ = Reflect::set(object, &key.into(), &value.into());
}

#[wasm_bindgen]
impl Engine {
    /// Start on WebGPU: one device for the worker's lifetime, tiles sized from its limits.
    /// `limit_override` (bytes, 0 for none) caps the limits used for tiling, so tests can
    /// force many tiles. `adapter` is the adapter's description from the browser's
    /// `GPUAdapterInfo` (the worker asks the browser for an adapter first, which is how it
    /// tells "no GPU" from a failure; wgpu cannot be handed that adapter, so it asks again);
    /// empty, wgpu's own description is used.
    #[wasm_bindgen(js_name = webGpu)]
    pub async fn web_gpu(limit_override: f64, adapter: String) -> Result<Engine, JsError> {
        console_error_panic_hook::set_once();
        let device = WgpuDevice::default();
        let setup = init_setup_async::<WebGpu>(&device, RuntimeOptions::default()).await;
        let limits = setup.device.limits();
        let mut binding = limits.max_storage_buffer_binding_size as f64;
        let mut buffer = limits.max_buffer_size as f64;
        if limit_override > 0.0 {
            binding = binding.min(limit_override);
            buffer = buffer.min(limit_override);
        }
        let adapter = match adapter.trim() {
            "" => match setup.adapter.get_info().name {
                name if name.is_empty() => "an unnamed adapter".to_string(),
                name => name,
            },
            given => given.to_string(),
        };
        Ok(Engine {
            gpu: Some(device),
            adapter,
            tile: model::tiling::tile_for_gpu_limits(binding as u64, buffer as u64),
            network: None,
        })
    }

    /// Start on the CPU (burn-flex in WebAssembly); `adapter` names the convolutions' kernel
    /// this build runs (plain or relaxed SIMD: the page loads the build the browser takes).
    pub fn cpu() -> Engine {
        console_error_panic_hook::set_once();
        Engine {
            gpu: None,
            adapter: format!("CPU (WebAssembly, {})", model::backend::products_in_use()),
            tile: CPU_TILE,
            network: None,
        }
    }

    /// `webgpu` or `cpu`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        if self.gpu.is_some() { "webgpu" } else { "cpu" }.into()
    }

    /// What the engine runs on, as the page shows it.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// Tile side in pixels.
    #[wasm_bindgen(getter)]
    pub fn tile(&self) -> usize {
        self.tile
    }

    /// The largest image, in pixels, whose stage-by-stage views a derain keeps.
    #[wasm_bindgen(getter, js_name = stageViewPixels)]
    pub fn stage_view_pixels(&self) -> f64 {
        MAX_STAGE_VIEW_PIXELS as f64
    }

    /// The keys of the views the page treats apart, and the derained view's label (for an
    /// earlier photo, which keeps only its result): `{input, derained, derainedLabel}`.
    #[wasm_bindgen(getter, js_name = viewNames)]
    pub fn view_names(&self) -> Object {
        let names = Object::new();
        set(&names, "input", INPUT_VIEW);
        set(&names, "derained", Output::Background.key());
        set(&names, "derainedLabel", Output::Background.label());
        names
    }

    /// How many CPU workers to start ([`crate::cpu_workers`]: no more than a quarter of the
    /// device's memory holds, unless the page's `?workers=` chose the number).
    #[wasm_bindgen(js_name = cpuWorkers)]
    pub fn cpu_workers(&self, wanted: usize, asked: bool, device_memory_gib: f64) -> usize {
        crate::cpu_workers(wanted, asked, device_memory_gib)
    }

    /// Pixels of the warm-up image ([`Engine::warm_up`]), to scale its time to a photo's.
    #[wasm_bindgen(getter, js_name = warmUpPixels)]
    pub fn warm_up_pixels(&self) -> usize {
        WARM_UP_SIDE * WARM_UP_SIDE
    }

    /// Load weights (our record, or an authors' `.pth` of any architecture we know) on the
    /// engine's backend, replacing the current ones only on success. Returns
    /// `{architecture, stages}`.
    #[wasm_bindgen(js_name = loadWeights)]
    pub fn load_weights(&mut self, bytes: Vec<u8>, name: &str) -> Result<Object, JsError> {
        let network = match &self.gpu {
            Some(device) => Network::Gpu(
                model::load_any(bytes, None, name, device).map_err(js_error)?,
                device.clone(),
            ),
            None => Network::Cpu(
                model::load_any(bytes, None, name, &Default::default()).map_err(js_error)?,
            ),
        };
        let config = match &network {
            Network::Gpu(net, _) => net.config.clone(),
            Network::Cpu(net) => net.config.clone(),
        };
        self.network = Some(Rc::new(network));
        let info = Object::new();
        set(&info, "architecture", config.describe());
        set(&info, "stages", config.stages as u32);
        Ok(info)
    }

    fn network(&self) -> Result<Rc<Network>, JsError> {
        self.network
            .clone()
            .ok_or_else(|| JsError::new("no weights are loaded; load a weights file first"))
    }

    /// Derain an image file's bytes at `stages` T. `progress(done, total)` is called after
    /// each tile and returns (a promise of) false to cancel. `keep_stages` also returns each
    /// stage's estimates (images up to [`Engine::stage_view_pixels`]). Resolves to
    /// `{width, height, png, stagesKept, tile, views: [{key, label, rgba}]}` (`tile`: the tile
    /// side planned with; on the CPU, [`crate::cpu_tile`] for the photo and the workers);
    /// rejects with an
    /// `Error` whose `kind` names what went wrong ([`ModelError::kind`]).
    ///
    /// With `share` (the CPU fallback on several Web Workers), the network runs elsewhere:
    /// `share(pixels, width, height, stages, allStages)` is called for up to `workers` tiles
    /// at once and resolves to that tile's maps as another engine's [`Engine::run_tile`]
    /// gives them (same weights); this engine decodes, blends in tile order (the result is
    /// the same bit for bit as deraining here) and encodes.
    pub fn derain(
        &self,
        file: Vec<u8>,
        stages: usize,
        keep_stages: bool,
        progress: Function,
        share: Option<Function>,
        workers: usize,
    ) -> Promise {
        let (network, tile) = (self.network(), self.tile);
        future_to_promise(async move {
            let share = share.map(|f| (f, workers.max(1)));
            derain(network?, tile, file, stages, keep_stages, progress, share)
                .await
                .map(JsValue::from)
                .map_err(rejection)
        })
    }

    /// Run the network on one tile's planar RGB pixels (`[3, height, width]`, in [0, 1]) for
    /// another engine's [`Engine::derain`]: its maps in the order of [`model::derain::layout`]
    /// (background, rain layer, then with `all_stages` every stage's backgrounds and rains),
    /// each a `Float32Array`. CPU only.
    #[wasm_bindgen(js_name = runTile)]
    pub fn run_tile(
        &self,
        pixels: Vec<f32>,
        width: usize,
        height: usize,
        stages: usize,
        all_stages: bool,
    ) -> Result<Array, JsError> {
        let Network::Cpu(net) = &*self.network()? else {
            return Err(JsError::new(
                "runTile runs on the CPU engine; a WebGPU engine derains whole images",
            ));
        };
        let options = tile_options(width.max(height), stages, all_stages);
        let maps = model::tile_maps(net, pixels, width, height, &options, &Default::default())
            .map_err(js_error)?;
        Ok(maps
            .iter()
            .map(|m| Float32Array::from(m.as_slice()))
            .collect())
    }

    /// Run the network once on a small blank image with at most two stages (every kernel a
    /// longer run uses) so that the first real photo does not pay for shader compilation.
    /// Resolves to the stages run.
    #[wasm_bindgen(js_name = warmUp)]
    pub fn warm_up(&self, stages: usize) -> Promise {
        let network = self.network();
        future_to_promise(async move {
            let network = network?;
            let side = WARM_UP_SIDE;
            let picture = Picture {
                width: side,
                height: side,
                rgb: vec![0.5; 3 * side * side],
                alpha: None,
                depth: model::image::BitDepth::Eight,
                gray: false,
            };
            let stages = stages.clamp(1, WARM_UP_STAGES);
            let options = tile_options(side, stages, false);
            run(&network, &picture, &options, |_, _| async { true })
                .await
                .map_err(|e| JsValue::from(js_error(e)))?;
            Ok(JsValue::from(stages as u32))
        })
    }
}

/// `navigator.deviceMemory` in GiB as the browser rounds it, 0 where it does not tell (Firefox,
/// Safari).
fn device_memory_gib() -> f64 {
    Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|navigator| Reflect::get(&navigator, &"deviceMemory".into()))
        .ok()
        .and_then(|memory| memory.as_f64())
        .unwrap_or(0.0)
}

/// The options of a page derain: the rain layer always (the page shows it), every stage's
/// estimates when asked.
fn tile_options(tile: usize, stages: usize, all_stages: bool) -> DerainOptions {
    DerainOptions {
        tile,
        overlap: model::tiling::overlap_for(tile),
        rain_layer: true,
        all_stages,
        ..DerainOptions::new(stages)
    }
}

/// One tile's maps from another worker: `share(pixels, width, height, stages, allStages)`
/// resolves to an array of `Float32Array`s.
async fn shared_tile(
    share: &Function,
    pixels: Vec<f32>,
    tile: &Tile,
    options: &DerainOptions,
) -> Result<Vec<Vec<f32>>, ModelError> {
    let failed = |e: JsValue| {
        let message = e
            .dyn_ref::<js_sys::Error>()
            .map(|e| String::from(e.message()))
            .or_else(|| e.as_string())
            .unwrap_or_else(|| format!("{e:?}"));
        ModelError::Device(format!("a CPU worker failed ({message})"))
    };
    let args = Array::of5(
        &Float32Array::from(pixels.as_slice()),
        &(tile.width as u32).into(),
        &(tile.height as u32).into(),
        &(options.stages as u32).into(),
        &options.all_stages.into(),
    );
    let promise = share.apply(&JsValue::NULL, &args).map_err(failed)?;
    let maps = JsFuture::from(Promise::resolve(&promise))
        .await
        .map_err(failed)?;
    if !Array::is_array(&maps) {
        return Err(ModelError::Protocol(
            "a CPU worker answered without maps".into(),
        ));
    }
    Array::from(&maps)
        .iter()
        .map(|m| {
            m.dyn_into::<Float32Array>()
                .map(|m| m.to_vec())
                .map_err(|_| {
                    ModelError::Protocol("a CPU worker answered with no Float32Array".into())
                })
        })
        .collect()
}

async fn run<P, F>(
    network: &Network,
    picture: &Picture,
    options: &DerainOptions,
    report: P,
) -> Result<Derained, ModelError>
where
    P: FnMut(usize, usize) -> F,
    F: core::future::Future<Output = bool>,
{
    match network {
        Network::Gpu(net, device) => {
            model::derain_async(net, picture, options, device, report).await
        }
        Network::Cpu(net) => {
            model::derain_async(net, picture, options, &Default::default(), report).await
        }
    }
}

async fn derain(
    network: Rc<Network>,
    tile: usize,
    file: Vec<u8>,
    stages: usize,
    keep_stages: bool,
    progress: Function,
    share: Option<(Function, usize)>,
) -> Result<Object, ModelError> {
    let picture = model::image::decode_within(&file, MAX_PIXELS)?;
    drop(file);
    let pixels = (picture.width * picture.height) as u64;
    let keep_stages = keep_stages && pixels <= MAX_STAGE_VIEW_PIXELS;
    // On the CPU the plan fits the photo and the workers (WebGPU's fits the GPU's limits).
    let tile = match &*network {
        Network::Cpu(_) => {
            let workers = share.as_ref().map_or(1, |(_, workers)| *workers);
            crate::cpu_tile(picture.width, picture.height, workers, device_memory_gib())
        }
        _ => tile,
    };
    let options = tile_options(tile, stages, keep_stages);
    // Awaiting the page's promise between tiles lets the worker see a Cancel message.
    let report = |done: usize, total: usize| {
        let promise = progress.call2(
            &JsValue::NULL,
            &(done as u32).into(),
            &(total as u32).into(),
        );
        async move {
            match promise {
                Ok(p) => JsFuture::from(Promise::resolve(&p))
                    .await
                    .map(|v| v.as_bool().unwrap_or(true))
                    .unwrap_or(false),
                Err(_) => false,
            }
        }
    };
    let out = match (&share, &*network) {
        (Some((share, workers)), Network::Cpu(net)) => {
            let run_tile = |pixels, tile: &Tile| {
                let tile = *tile;
                let options = &options;
                async move { shared_tile(share, pixels, &tile, options).await }
            };
            model::derain_shared(net, &picture, &options, *workers, run_tile, report).await
        }
        _ => run(&network, &picture, &options, report).await,
    }?;
    let png = model::encode_png(&out.background, &picture)?;
    let result = Object::new();
    set(&result, "width", picture.width as u32);
    set(&result, "height", picture.height as u32);
    set(&result, "png", Uint8Array::from(png.as_slice()));
    set(&result, "stagesKept", keep_stages);
    set(&result, "tile", tile as u32);
    let list = Array::new();
    for view in views(&picture, &out) {
        let item = Object::new();
        set(&item, "key", view.key);
        set(&item, "label", view.label);
        set(&item, "rgba", Uint8ClampedArray::from(view.rgba.as_slice()));
        list.push(&item);
    }
    set(&result, "views", list);
    Ok(result)
}
