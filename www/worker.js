// The page's Web Workers. The engine worker owns the wasm engine (WebGPU device or CPU), the
// weights, and every derain, so the page never freezes. Messages in: init, helpers, weights,
// derain, cancel. Messages out: status, want-helpers, helpers-dropped, ready, progress,
// result, error, weights, gpu-failed.
// On the CPU with several workers, the page also starts helper workers (this script, given a
// MessagePort by a `helper` message) and hands the engine worker the other ends: the engine
// worker then decodes, shares the tiles out among the helpers, blends and encodes, and each
// helper runs the network on the tiles it is sent (same weights, so the same pixels).
/* global wasm_bindgen */
'use strict';

importScripts('./web.js');
const brn = wasm_bindgen;
const WASM = new URL('./web_bg.wasm', self.location);

const CACHE = 'brn-weights-v1';
const USER_WEIGHTS_KEY = 'user-weights/current';
let cancelled = false;
let engine = null; // brn.Engine: backend, adapter, tile, warmUpPixels, stageViewPixels, workerMemoryMiB; loadWeights, warmUp, derain, runTile
let reason = ''; // why the CPU is used, if it is
let weights = null; // {label, architecture, stages, source}
let wasm = null; // the module's exports (its memory's size is reported)
// Helper workers (CPU, several workers): {port, busy, pending: Map(id → {resolve, reject})}.
let helpers = [];
let idleWaiters = []; // tile requests waiting for a helper to be free
let nextRequest = 1;
let helperCrashed = false; // a helper's wasm trapped: the page restarts every worker
let givePorts = null; // resolves the page's answer to want-helpers
let helperMemory = 0; // the largest wasm memory a helper reported, in bytes
let currentDerain = null; // the id of the derain in progress (helpers count its tiles)

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

// Load weights here (which checks them), then in every helper (same bytes, same result).
async function load(bytes, label, source) {
  const info = engine.loadWeights(bytes, label);
  weights = { label, architecture: info.architecture, stages: info.stages, source };
  try {
    await Promise.all(helpers.map((h) => ask(h, { type: 'weights', bytes, label })));
  } catch (e) {
    dropHelpers(`a CPU worker could not start (${errorText(e)})`);
  }
  return weights;
}

// One request to a helper; resolves to its answer, rejects with its error.
function ask(helper, msg, transfer) {
  return new Promise((resolve, reject) => {
    const id = nextRequest++;
    helper.pending.set(id, { resolve, reject });
    helper.port.postMessage({ ...msg, id }, transfer || []);
  });
}

function answered(helper, msg) {
  const waiter = helper.pending.get(msg.id);
  if (!waiter) return;
  helper.pending.delete(msg.id);
  if (msg.type === 'failed') {
    if (msg.fatal) helperCrashed = true;
    waiter.reject(new Error(msg.message));
  } else {
    waiter.resolve(msg);
  }
}

function connect(ports) {
  helpers = ports.map((port) => {
    const helper = { port, busy: false, pending: new Map(), tiles: 0 };
    port.onmessage = (e) => answered(helper, e.data);
    return helper;
  });
}

// Helpers that could not start are let go: the engine worker derains alone.
function dropHelpers(why) {
  for (const h of helpers) h.port.close();
  helpers = [];
  helperCrashed = false;
  post({ type: 'helpers-dropped', reason: why });
}

// A free helper (tiles are never more than helpers in flight, but a cancelled derain's tiles
// may still be finishing when the next derain starts).
function idleHelper() {
  const free = helpers.find((h) => !h.busy);
  if (free) {
    free.busy = true;
    return Promise.resolve(free);
  }
  return new Promise((resolve) => idleWaiters.push(resolve));
}

function release(helper) {
  const next = idleWaiters.shift();
  if (next) next(helper);
  else helper.busy = false;
}

// The engine's `share`: one tile's maps from a helper.
async function share(pixels, width, height, stages, allStages) {
  const derain = currentDerain;
  const helper = await idleHelper();
  try {
    const answer = await ask(helper, { type: 'tile', pixels, width, height, stages, allStages }, [pixels.buffer]);
    helperMemory = Math.max(helperMemory, answer.memory);
    // Counted for the derain that asked (a cancelled one's late tiles are not the next one's).
    if (derain === currentDerain) helper.tiles += 1;
    return answer.maps;
  } finally {
    release(helper);
  }
}

// The engine runs a small image with at most two stages (every kernel more stages use).
async function warmUp() {
  const t0 = performance.now();
  const stages = await engine.warmUp(weights.stages);
  return { seconds: (performance.now() - t0) / 1000, pixels: engine.warmUpPixels, stages };
}

// What the page shows of the engine.
function engineInfo() {
  return {
    backend: engine.backend, adapter: engine.adapter, tile: engine.tile, reason,
    workers: Math.max(1, helpers.length), memory: wasm.memory.buffer.byteLength,
    stageViewPixels: engine.stageViewPixels,
  };
}

// The one CPU speed estimate: the seconds a megapixel takes on all the workers at the weights'
// T, from a run of `pixels` at `stages` T that took `seconds` on `workersUsed` workers (the
// warm-up runs on one, a photo's tiles on all). Null on WebGPU.
function secondsPerMp(seconds, pixels, stages, workersUsed) {
  if (engine.backend !== 'cpu' || !weights) return null;
  const workers = Math.max(1, helpers.length);
  return (seconds / (pixels / 1e6)) * (weights.stages / stages) * (workersUsed / workers);
}

// CPU workers to start: as many as asked, or (unless the page's ?workers= asked) no more than
// a quarter of the device's memory holds at the engine's measured memory per worker (the
// browser tells it, rounded, as navigator.deviceMemory in GiB).
function workersToStart(workers, asked) {
  const memory = self.navigator.deviceMemory;
  if (asked || !memory) return workers;
  return Math.max(1, Math.min(workers, Math.floor((memory * 1024) / 4 / engine.workerMemoryMiB)));
}

async function init({ mode, limitOverride, workers: wanted, workersAsked }) {
  wasm = await brn({ module_or_path: WASM });
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
    const workers = workersToStart(wanted, workersAsked);
    if (workers > 1) {
      status(`Starting ${workers} CPU workers…`);
      const ports = new Promise((resolve) => { givePorts = resolve; });
      post({ type: 'want-helpers', count: workers });
      connect(await ports);
    }
  }

  status('Loading weights…');
  // load() throws only when the engine refuses the weights (a helper that does is let go).
  const user = await cached(USER_WEIGHTS_KEY);
  let loaded = null;
  if (user) {
    try { loaded = await load(user.bytes, user.name, 'yours (cached)'); } catch (_) { await forget(USER_WEIGHTS_KEY); }
  }
  if (!loaded) {
    const def = await defaultWeights();
    if (def) loaded = await load(def.bytes, def.label, def.source);
  }
  let warm = null;
  if (loaded) {
    status(engine.backend === 'webgpu' ? 'Compiling GPU kernels (one-time warm-up)…' : 'Warming up…');
    warm = await warmUp();
  }
  const estimate = warm && secondsPerMp(warm.seconds, warm.pixels, warm.stages, 1);
  post({ type: 'ready', engine: engineInfo(), weights, estimate });
}

async function run({ id, file, stages, keepStages }) {
  cancelled = false;
  currentDerain = id;
  for (const h of helpers) h.tiles = 0;
  const t0 = performance.now();
  const progress = async (done, total) => {
    post({ type: 'progress', id, done, total, seconds: (performance.now() - t0) / 1000 });
    // Yield to the event loop so that a Cancel message is seen before the next tile.
    await new Promise((resolve) => setTimeout(resolve, 0));
    return !cancelled;
  };
  const out = await engine.derain(new Uint8Array(file), stages, keepStages, progress,
    helpers.length ? share : null, helpers.length);
  const seconds = (performance.now() - t0) / 1000;
  const views = out.views.map((v) => ({ key: v.key, label: v.label, rgba: v.rgba }));
  post({
    type: 'result', id, seconds, width: out.width, height: out.height, png: out.png,
    stagesKept: out.stagesKept, views, backend: engine.backend, workers: Math.max(1, helpers.length),
    estimate: secondsPerMp(seconds, out.width * out.height, stages, Math.max(1, helpers.length)),
    memory: { engine: wasm.memory.buffer.byteLength, helper: helperMemory },
    tilesByHelper: helpers.map((h) => h.tiles),
  }, [out.png.buffer, ...views.map((v) => v.rgba.buffer)]);
}

// A helper worker: the CPU engine with the same weights, running the tiles it is sent.
function serveTiles(port) {
  const started = brn({ module_or_path: WASM }).then((exports) => {
    wasm = exports;
    engine = brn.Engine.cpu();
  });
  port.onmessage = async (event) => {
    const msg = event.data;
    try {
      await started;
      if (msg.type === 'weights') {
        engine.loadWeights(new Uint8Array(msg.bytes), msg.label);
        port.postMessage({ type: 'loaded', id: msg.id });
      } else if (msg.type === 'tile') {
        const maps = engine.runTile(msg.pixels, msg.width, msg.height, msg.stages, msg.allStages);
        port.postMessage({ type: 'maps', id: msg.id, maps, memory: wasm.memory.buffer.byteLength }, maps.map((m) => m.buffer));
      }
    } catch (e) {
      port.postMessage({ type: 'failed', id: msg.id, message: errorText(e), fatal: fatal(e) || !engine });
    }
  };
}

self.onmessage = async (event) => {
  const msg = event.data;
  try {
    switch (msg.type) {
      case 'init':
        await init(msg);
        break;
      case 'helpers':
        if (givePorts) givePorts(msg.ports);
        givePorts = null;
        break;
      case 'helper':
        serveTiles(msg.port);
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
          await load(def.bytes, def.label, def.source);
        } else {
          await load(bytes, msg.name, 'yours');
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
    post({
      type: 'error', id: msg.id, during: msg.type, message: errorText(e), kind: (e && e.kind) || null,
      fatal: fatal(e) || helperCrashed, helper: helperCrashed,
    });
  }
};
