// The page's Web Worker: owns the wasm engine (WebGPU device or CPU), the weights, and every
// derain, so the page never freezes. Messages in: init, weights, derain, cancel.
// Messages out: status, ready, progress, result, error, weights, gpu-failed, crashed.
/* global wasm_bindgen */
'use strict';

importScripts('./web.js');
const brn = wasm_bindgen;

const CACHE = 'brn-weights-v1';
const USER_WEIGHTS_KEY = 'user-weights/current';
let cancelled = false;
let engine = null; // brn.Engine: backend, adapter, tile, warmUpPixels; loadWeights, warmUp, derain
let reason = ''; // why the CPU is used, if it is
let weights = null; // {label, architecture, stages, source}

const post = (msg, transfer) => self.postMessage(msg, transfer || []);
const status = (text) => post({ type: 'status', text });

function errorText(e) {
  if (e instanceof WebAssembly.RuntimeError) return `internal error (${e.message})`;
  return (e && e.message) || String(e);
}

// A wasm trap leaves the module unusable: ask the page for a fresh worker.
function fatal(e) {
  return e instanceof WebAssembly.RuntimeError;
}

async function cached(key) {
  if (!self.caches) return null;
  try {
    const cache = await caches.open(CACHE);
    const hit = await cache.match(key);
    if (!hit) return null;
    return { bytes: new Uint8Array(await hit.arrayBuffer()), name: hit.headers.get('x-name') || key };
  } catch (_) {
    return null;
  }
}

async function remember(key, bytes, name) {
  if (!self.caches) return;
  try {
    const cache = await caches.open(CACHE);
    await cache.put(key, new Response(bytes, { headers: { 'x-name': name } }));
  } catch (_) { /* a full or disabled cache only costs a re-download */ }
}

async function forget(key) {
  if (!self.caches) return;
  try { await (await caches.open(CACHE)).delete(key); } catch (_) { /* nothing to forget */ }
}

// The default weights named by the build's manifest, from the Cache API when already fetched.
async function defaultWeights() {
  const manifest = await (await fetch('./weights/manifest.json', { cache: 'no-cache' })).json();
  if (!manifest.file) return null;
  const url = new URL(`./weights/${manifest.file}?v=${manifest.version}`, self.location).href;
  const hit = await cached(url);
  if (hit) return { bytes: hit.bytes, label: manifest.label, source: 'default (cached)' };
  status(`Downloading the default weights (${(manifest.bytes / 1e6).toFixed(1)} MB)…`);
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot download the default weights (${response.status})`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  // Drop older versions, keep this one.
  if (self.caches) {
    try {
      const cache = await caches.open(CACHE);
      for (const req of await cache.keys()) {
        if (req.url.includes('/weights/default.') && req.url !== url) await cache.delete(req);
      }
    } catch (_) { /* ignore */ }
  }
  await remember(url, bytes, manifest.label);
  return { bytes, label: manifest.label, source: 'default' };
}

function load(bytes, label, source) {
  const info = engine.loadWeights(bytes, label);
  weights = { label, architecture: info.architecture, stages: info.stages, source };
  return weights;
}

// The engine runs a small image with at most two stages (every kernel more stages use).
async function warmUp() {
  const t0 = performance.now();
  const stages = await engine.warmUp(weights.stages);
  return { seconds: (performance.now() - t0) / 1000, pixels: engine.warmUpPixels, stages };
}

// What the page shows of the engine.
function engineInfo() {
  return { backend: engine.backend, adapter: engine.adapter, tile: engine.tile, reason };
}

async function init({ mode, limitOverride }) {
  await brn({ module_or_path: new URL('./web_bg.wasm', self.location) });
  let adapter = null;
  if (mode === 'cpu') {
    reason = 'CPU requested';
  } else if (!self.navigator.gpu) {
    reason = 'WebGPU is not available in this browser';
  } else {
    try { adapter = await self.navigator.gpu.requestAdapter({ powerPreference: 'high-performance' }); } catch (_) { adapter = null; }
    if (!adapter) reason = 'this browser offers WebGPU but no GPU adapter';
  }
  if (!reason) {
    status('Starting WebGPU…');
    const i = adapter.info || {};
    const name = i.description || [i.vendor, i.architecture].filter(Boolean).join(' ');
    try {
      engine = await brn.Engine.webGpu(limitOverride || 0, name);
    } catch (e) {
      post({ type: 'gpu-failed', reason: `WebGPU failed to start (${errorText(e)})` });
      return;
    }
  } else {
    engine = brn.Engine.cpu();
  }

  status('Loading weights…');
  const user = await cached(USER_WEIGHTS_KEY);
  let loaded = null;
  if (user) {
    try { loaded = load(user.bytes, user.name, 'yours (cached)'); } catch (_) { await forget(USER_WEIGHTS_KEY); }
  }
  if (!loaded) {
    const def = await defaultWeights();
    if (def) loaded = load(def.bytes, def.label, def.source);
  }
  let warm = null;
  if (loaded) {
    status(engine.backend === 'webgpu' ? 'Compiling GPU kernels (one-time warm-up)…' : 'Warming up…');
    warm = await warmUp();
  }
  post({ type: 'ready', engine: engineInfo(), weights, warmUp: warm });
}

async function run({ id, file, stages, keepStages }) {
  cancelled = false;
  const t0 = performance.now();
  const out = await engine.derain(new Uint8Array(file), stages, keepStages, async (done, total) => {
    post({ type: 'progress', id, done, total, seconds: (performance.now() - t0) / 1000 });
    // Yield to the event loop so that a Cancel message is seen before the next tile.
    await new Promise((resolve) => setTimeout(resolve, 0));
    return !cancelled;
  });
  const seconds = (performance.now() - t0) / 1000;
  const views = out.views.map((v) => ({ label: v.label, rgba: v.rgba }));
  post({
    type: 'result', id, seconds, width: out.width, height: out.height, png: out.png,
    stagesKept: out.stagesKept, views, backend: engine.backend,
  }, [out.png.buffer, ...views.map((v) => v.rgba.buffer)]);
}

self.onmessage = async (event) => {
  const msg = event.data;
  try {
    switch (msg.type) {
      case 'init':
        await init(msg);
        break;
      case 'cancel':
        cancelled = true;
        break;
      case 'weights': {
        const bytes = new Uint8Array(msg.bytes);
        if (msg.reset) {
          await forget(USER_WEIGHTS_KEY);
          const def = await defaultWeights();
          if (!def) throw new Error('this build has no default weights');
          load(def.bytes, def.label, def.source);
        } else {
          load(bytes, msg.name, 'yours');
          await remember(USER_WEIGHTS_KEY, bytes, msg.name);
        }
        status('Warming up…');
        await warmUp();
        post({ type: 'weights', weights });
        break;
      }
      case 'derain':
        await run(msg);
        break;
      default:
        break;
    }
  } catch (e) {
    post({ type: 'error', id: msg.id, during: msg.type, message: errorText(e), fatal: fatal(e) });
  }
};
