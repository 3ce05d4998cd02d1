//! The JavaScript boundary, called from the page's Web Worker (`www/worker.js`). One engine per
//! worker: a WebGPU device is created once and kept (the browser allows one device setup per
//! page), or the CPU backend is used. Every error is a `JsError` with a message a person can
//! act on; nothing here panics on bad input.

use std::cell::RefCell;
use std::rc::Rc;

use burn_flex::Flex;
use burn_wgpu::{graphics::WebGpu, init_setup_async, RuntimeOptions, Wgpu, WgpuDevice};
use js_sys::{Array, Object, Promise, Reflect, Uint8Array, Uint8ClampedArray};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use model::image::Picture;
use model::{Brn, DerainOptions, Derained, ModelError};

use crate::{views, CPU_TILE, MAX_PIXELS, MAX_STAGE_VIEW_PIXELS};

enum Network {
    Gpu(Brn<Wgpu>, WgpuDevice),
    Cpu(Brn<Flex>),
}

struct Engine {
    gpu: Option<WgpuDevice>,
    adapter: String,
    tile: usize,
    network: Option<Rc<Network>>,
}

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
}

fn js_error(e: ModelError) -> JsError {
    JsError::new(&e.to_string())
}

fn set(object: &Object, key: &str, value: impl Into<JsValue>) {
    // Setting a property on a plain object we just made cannot fail.
    let _ = Reflect::set(object, &key.into(), &value.into());
}

fn describe(engine: &Engine) -> Object {
    let info = Object::new();
    set(
        &info,
        "backend",
        if engine.gpu.is_some() {
            "webgpu"
        } else {
            "cpu"
        },
    );
    set(&info, "adapter", engine.adapter.as_str());
    set(&info, "tile", engine.tile as u32);
    info
}

/// Start the WebGPU engine: one device for the worker's lifetime, tiles sized from its limits.
/// `limit_override` (bytes, 0 for none) caps the limits used for tiling, so tests can force
/// many tiles. Returns `{backend, adapter, tile}`.
#[wasm_bindgen(js_name = initWebGpu)]
pub async fn init_webgpu(limit_override: f64) -> Result<Object, JsError> {
    console_error_panic_hook::set_once();
    if let Some(info) = ENGINE.with_borrow(|e| e.as_ref().map(describe)) {
        return Ok(info);
    }
    let device = WgpuDevice::default();
    let setup = init_setup_async::<WebGpu>(&device, RuntimeOptions::default()).await;
    let limits = setup.device.limits();
    let mut binding = limits.max_storage_buffer_binding_size as f64;
    let mut buffer = limits.max_buffer_size as f64;
    if limit_override > 0.0 {
        binding = binding.min(limit_override);
        buffer = buffer.min(limit_override);
    }
    let info = setup.adapter.get_info();
    let engine = Engine {
        gpu: Some(device),
        adapter: format!("{} ({:?})", info.name, info.backend),
        tile: crate::tile_for_limits(binding as u64, buffer as u64),
        network: None,
    };
    let described = describe(&engine);
    ENGINE.with_borrow_mut(|e| *e = Some(engine));
    Ok(described)
}

/// Start the CPU engine (burn-flex in wasm). Returns `{backend, adapter, tile}`.
#[wasm_bindgen(js_name = initCpu)]
pub fn init_cpu() -> Object {
    console_error_panic_hook::set_once();
    ENGINE.with_borrow_mut(|e| {
        let engine = e.get_or_insert_with(|| Engine {
            gpu: None,
            adapter: "CPU (WebAssembly)".into(),
            tile: CPU_TILE,
            network: None,
        });
        describe(engine)
    })
}

/// Load weights (our record, or an authors' `.pth`) on the engine's backend, replacing the
/// current ones only on success. Returns `{architecture, stages}`.
#[wasm_bindgen(js_name = loadWeights)]
pub fn load_weights(bytes: Vec<u8>, name: &str) -> Result<Object, JsError> {
    ENGINE.with_borrow_mut(|engine| {
        let engine = engine
            .as_mut()
            .ok_or_else(|| JsError::new("the engine is not started"))?;
        let network = match &engine.gpu {
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
        engine.network = Some(Rc::new(network));
        let info = Object::new();
        set(&info, "architecture", config.describe());
        set(&info, "stages", config.stages as u32);
        Ok(info)
    })
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

/// Derain an image file's bytes at `stages` T. `progress(done, total)` is called after each
/// tile and returns (a promise of) false to cancel. `keepStages` also returns each stage's
/// estimates (images up to 4 MP). Returns `{width, height, png, views: [{label, rgba}]}`.
#[wasm_bindgen]
pub async fn derain(
    file: Vec<u8>,
    stages: usize,
    keep_stages: bool,
    progress: js_sys::Function,
) -> Result<Object, JsError> {
    let (network, tile) = ENGINE.with_borrow(|engine| {
        let engine = engine
            .as_ref()
            .ok_or_else(|| JsError::new("the engine is not started"))?;
        let network = engine
            .network
            .clone()
            .ok_or_else(|| JsError::new("no weights are loaded; load a weights file first"))?;
        Ok::<_, JsError>((network, engine.tile))
    })?;
    let picture = model::image::decode_within(&file, MAX_PIXELS).map_err(js_error)?;
    drop(file);
    let pixels = (picture.width * picture.height) as u64;
    let keep_stages = keep_stages && pixels <= MAX_STAGE_VIEW_PIXELS;
    let options = DerainOptions {
        tile,
        overlap: crate::overlap_for(tile),
        rain_layer: true,
        all_stages: keep_stages,
        ..DerainOptions::new(stages)
    };
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
    let out = run(&network, &picture, &options, report)
        .await
        .map_err(js_error)?;
    let png = model::encode_png(&out.background, &picture).map_err(js_error)?;
    let result = Object::new();
    set(&result, "width", picture.width as u32);
    set(&result, "height", picture.height as u32);
    set(&result, "png", Uint8Array::from(png.as_slice()));
    set(&result, "stagesKept", keep_stages);
    let list = Array::new();
    for view in views(&picture, &out) {
        let item = Object::new();
        set(&item, "label", view.label);
        set(&item, "rgba", Uint8ClampedArray::from(view.rgba.as_slice()));
        list.push(&item);
    }
    set(&result, "views", list);
    Ok(result)
}

/// Side of the warm-up image.
pub const WARM_UP_SIDE: usize = 32;

/// Run the network once on a small blank image (two stages run every kernel a longer run
/// does) so the first real photo does not pay for shader compilation. Errors say what failed.
#[wasm_bindgen(js_name = warmUp)]
pub async fn warm_up(stages: usize) -> Result<(), JsError> {
    let network = ENGINE
        .with_borrow(|e| e.as_ref().and_then(|e| e.network.clone()))
        .ok_or_else(|| JsError::new("no weights are loaded"))?;
    let side = WARM_UP_SIDE;
    let picture = Picture {
        width: side,
        height: side,
        rgb: vec![0.5; 3 * side * side],
        alpha: None,
        depth: model::image::BitDepth::Eight,
        gray: false,
    };
    let options = DerainOptions {
        tile: side,
        rain_layer: true,
        ..DerainOptions::new(stages)
    };
    run(&network, &picture, &options, |_, _| async { true })
        .await
        .map(|_| ())
        .map_err(js_error)
}
