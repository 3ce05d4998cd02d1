// The engine worker: the wasm engine (WebGPU device or CPU) with its weights, answering the
// page's messages (protocol.js: init, helpers, weights, derain, cancel).

import * as pool from './helper-pool.js';
import * as protocol from './protocol.js';
import { Msg } from './protocol.js';
import { amountTable, blendAmount, Engine, errorText, isFatal, sha256, startWasm } from './wasm.js';
import { cached, defaultWeights, forget, remember, USER_WEIGHTS } from './weights-cache.js';

let cancelled = false;
let engine = null; // Engine: backend, adapter, tile, warmUpPixels, stageViewPixels, viewNames; loadWeights, warmUp, derain, cpuWorkers
let reason = ''; // why the CPU is used, if it is
let weights = null; // {label, architecture, stages, source}
let wasm = null; // the module's exports (its memory's size is reported)
let givePorts = null; // resolves the page's answer to want-helpers
let notice = null; // what the page should tell the person about the start (a repaired cache)

const post = (msg, transfer) => self.postMessage(msg, transfer || []);
const status = (text) => post(protocol.status(text));
const workers = () => Math.max(1, pool.helperCount());

// Load weights here (which checks them), then in every helper (same bytes, same result).
async function load(bytes, label, source) {
  const info = engine.loadWeights(bytes, label);
  weights = { label, architecture: info.architecture, stages: info.stages, source };
  await pool.loadInHelpers(bytes, label, post);
  return weights;
}

// The engine runs a small image with at most two stages (every kernel more stages use).
// On the CPU it is timed on a second run: the first runs the browser's baseline code (V8
// compiles the optimized code in the background meanwhile) and touches fresh memory, about
// twice as slow as a photo's tiles (node 20, the 2-core EPYC: 122 s per MP at T = 4 against 66
// on the second run and 69 on a 214x214 tile): the page promised twice the time it took.
async function warmUp() {
  if (engine.backend === 'cpu') await engine.warmUp(weights.stages);
  const t0 = performance.now();
  const stages = await engine.warmUp(weights.stages);
  return { seconds: (performance.now() - t0) / 1000, pixels: engine.warmUpPixels, stages };
}

// What the page shows of the engine.
function engineInfo() {
  return {
    backend: engine.backend, adapter: engine.adapter, tile: engine.tile, reason,
    workers: workers(), memory: wasm.memory.buffer.byteLength,
    stageViewPixels: engine.stageViewPixels, views: engine.viewNames,
  };
}

// The one CPU speed estimate: the seconds a megapixel takes on all the workers at the weights'
// T, from a run of `pixels` at `stages` T that took `seconds` on `workersUsed` workers (the
// warm-up runs on one, a photo's tiles on all). Null on WebGPU.
function secondsPerMp(seconds, pixels, stages, workersUsed) {
  if (engine.backend !== 'cpu' || !weights) return null;
  return (seconds / (pixels / 1e6)) * (weights.stages / stages) * (workersUsed / workers());
}

async function startGpu(limitOverride) {
  let adapter = null;
  if (!self.navigator.gpu) {
    reason = 'WebGPU is not available in this browser';
    return false;
  }
  try { adapter = await self.navigator.gpu.requestAdapter({ powerPreference: 'high-performance' }); } catch (_) { adapter = null; }
  if (!adapter) {
    reason = 'this browser offers WebGPU but no GPU adapter';
    return false;
  }
  status('Starting WebGPU…');
  const i = adapter.info || {};
  const name = i.description || [i.vendor, i.architecture].filter(Boolean).join(' ');
  try {
    engine = await Engine.webGpu(limitOverride || 0, name);
  } catch (e) {
    post(protocol.gpuFailed(`WebGPU failed to start (${errorText(e)})`));
    return null;
  }
  return true;
}

async function init({ mode, limitOverride, workers: wanted, workersAsked }) {
  wasm = await startWasm();
  if (mode === 'cpu') reason = 'CPU requested';
  const gpu = mode === 'cpu' ? false : await startGpu(limitOverride);
  if (gpu === null) return; // the page starts a CPU engine instead
  if (!gpu) {
    engine = Engine.cpu();
    // No more workers than the device's memory holds (the engine's rule), unless ?workers= asked.
    const count = engine.cpuWorkers(wanted, workersAsked, self.navigator.deviceMemory || 0);
    if (count > 1) {
      status(`Starting ${count} CPU workers…`);
      const ports = new Promise((resolve) => { givePorts = resolve; });
      post(protocol.wantHelpers(count));
      pool.connect(await ports);
    }
  }

  status('Loading weights…');
  // load() throws only when the engine refuses the weights (a helper that does is let go).
  const user = await cached(USER_WEIGHTS);
  let loaded = null;
  if (user) {
    try { loaded = await load(user.bytes, user.name, 'yours (cached)'); } catch (_) { await forget(USER_WEIGHTS); }
  }
  if (!loaded) loaded = await loadDefault();
  let warm = null;
  if (loaded) {
    status(engine.backend === 'webgpu' ? 'Compiling GPU kernels (one-time warm-up)…' : 'Warming up…');
    warm = await warmUp();
  }
  const estimate = warm && secondsPerMp(warm.seconds, warm.pixels, warm.stages, 1);
  post(protocol.ready(engineInfo(), weights, estimate, notice));
}

// The build's default weights (null when it has none). A cached copy that passes the hash
// check but still does not load is dropped and fetched once more.
async function loadDefault() {
  let def = await defaultWeights(status, sha256);
  if (!def) return null;
  if (def.cached) {
    try {
      return await load(def.bytes, def.label, def.source);
    } catch (_) {
      await forget(def.url);
      status('The saved copy of the default weights did not load; downloading them again…');
      def = await defaultWeights(status, sha256);
      def.repaired = true;
    }
  }
  const loaded = await load(def.bytes, def.label, def.source);
  if (def.repaired) notice = 'The saved copy of the default weights was damaged; they were downloaded again.';
  return loaded;
}

async function changeWeights({ bytes, name, reset }) {
  if (reset) {
    await forget(USER_WEIGHTS);
    if (!(await loadDefault())) throw new Error('this build has no default weights');
  } else {
    const mine = new Uint8Array(bytes);
    await load(mine, name, 'yours');
    await remember(USER_WEIGHTS, mine, name);
  }
  status('Warming up…');
  await warmUp();
  post(protocol.weightsLoaded(weights));
}

async function run({ id, file, stages, keepStages }) {
  cancelled = false;
  pool.startDerain(id);
  const t0 = performance.now();
  const progress = async (done, total) => {
    post(protocol.progress(id, done, total, (performance.now() - t0) / 1000));
    // Yield to the event loop so that a Cancel message is seen before the next tile.
    await new Promise((resolve) => setTimeout(resolve, 0));
    return !cancelled;
  };
  const shared = pool.helperCount() > 0;
  const out = await engine.derain(new Uint8Array(file), stages, keepStages, progress,
    shared ? pool.share : null, pool.helperCount());
  const seconds = (performance.now() - t0) / 1000;
  const views = out.views.map((v) => ({ key: v.key, label: v.label, rgba: v.rgba }));
  post(protocol.result(id, {
    seconds, width: out.width, height: out.height, png: out.png,
    stagesKept: out.stagesKept, tile: out.tile, views, backend: engine.backend, workers: workers(),
    estimate: secondsPerMp(seconds, out.width * out.height, stages, workers()),
    memory: { engine: wasm.memory.buffer.byteLength, helper: pool.helperMemory() },
    tilesByHelper: pool.tilesByHelper(),
  }), [out.png.buffer, ...views.map((v) => v.rgba.buffer)]);
}

// A question from the page (protocol.js): computed here with the engine's code, answered
// with the same `ask` number. It needs the module, not an engine or weights.
async function answer(msg) {
  try {
    await startWasm();
    const value = msg.type === Msg.AMOUNT_TABLE
      ? amountTable(msg.amount)
      : blendAmount(new Uint8Array(msg.photo), new Uint8Array(msg.png), msg.amount);
    post(protocol.answer(msg.ask, value, null), [value.buffer]);
  } catch (e) {
    post(protocol.answer(msg.ask, null, errorText(e)));
  }
}

/** One message from the page. */
export async function handle(msg) {
  if (msg.type === Msg.AMOUNT_TABLE || msg.type === Msg.BLEND) {
    await answer(msg);
    return;
  }
  try {
    switch (msg.type) {
      case Msg.INIT:
        await init(msg);
        break;
      case Msg.HELPERS:
        if (givePorts) givePorts(msg.ports);
        givePorts = null;
        break;
      case Msg.CANCEL:
        cancelled = true;
        break;
      case Msg.WEIGHTS:
        await changeWeights(msg);
        break;
      case Msg.DERAIN:
        await run(msg);
        break;
      default:
        break;
    }
  } catch (e) {
    const crashed = pool.helperCrashed();
    post(protocol.error(msg.id, msg.type, errorText(e), (e && e.kind) || null, isFatal(e) || crashed, crashed));
  }
}
