// What the page's modules share: the DOM lookup, the URL options, the page's state, its one
// phase, and the hook the browser tests read (`window.brnPage`).
// URL options: ?backend=cpu forces the CPU path; ?limit=BYTES caps the GPU limits used to size
// tiles (tests force many tiles with it); ?workers=N sets how many Web Workers share the CPU
// path's tiles; ?simd=plain loads the engine's plain-SIMD build where the browser would take
// the relaxed-SIMD one (wasm.js).

export const $ = (id) => document.getElementById(id);

const params = new URLSearchParams(location.search);
/** ?simd=plain: the workers load the engine's plain-SIMD build (wasm.js). */
export const plainSimd = params.get('simd') === 'plain';
/** ?workers=N, or NaN without it. */
export const workersAsked = Math.floor(Number(params.get('workers')));

// CPU workers wanted: one a core but one (the page and the engine worker's decoding and
// blending need a little), or as many as ?workers= asks; the engine caps the count and lowers
// it to what the device's memory holds (Engine.cpuWorkers).
function cpuWorkers() {
  if (workersAsked >= 1) return workersAsked;
  return Math.max(1, (navigator.hardwareConcurrency || 2) - 1);
}

export const state = {
  worker: null, helpers: [], workers: cpuWorkers(), mode: params.get('backend') === 'cpu' ? 'cpu' : 'auto',
  limit: Number(params.get('limit')) || 0, reason: '',
  engine: null, weights: null, cpuSecondsPerMp: null,
  // The result on show: its photo (queue item), views (RGBA by key), size and zoom; the newest result's
  // views (only it keeps them all); the amount of deraining shown and downloaded, in percent.
  nextId: 1, currentId: 0, views: [], viewsId: 0, shownItem: null, shownViews: [],
  shownOrphan: null, size: null, zoom: 'fit', amount: 100,
  // Every photo given: {id, name, file, status: waiting | working | done | failed | cancelled,
  // message, png (Blob), url}. Results are kept as PNG blobs, never as pixels, so a long queue
  // stays small; only the photo on show is decoded.
  queue: [],
};

// What tests read: the phase (mirrored as `state`), the last result (with its time, the tile
// side it was planned with, the wasm memory of the engine worker and of the largest helper,
// and how many tiles each helper ran), the engine in use (backend, and the adapter as the
// engine names it: the GPU, or the CPU path's wasm build), its CPU workers and the queue
// ({name, status, message} per photo).
export const hook = {
  state: 'loading', backend: null, lastPng: null, lastError: null, lastErrorKind: null, results: 0, queue: [],
};
window.brnPage = hook;

// The page's one phase, which drives both the controls and the test hook:
// loading (engine starting) → ready | no-weights | failed; ready → working (a derain) or
// weights (loading weights) → ready.
let phase = 'loading';
export const currentPhase = () => phase;
export const busy = () => phase === 'working' || phase === 'weights';

export function setPhase(next) {
  phase = next;
  hook.state = next;
  $('progress').hidden = !busy();
  $('drop').setAttribute('aria-disabled', String(phase !== 'ready'));
  $('weights-file').disabled = busy() || phase === 'loading';
  $('retry').hidden = phase !== 'failed';
}
