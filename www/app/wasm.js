// The wasm engine (wasm-bindgen's ES-module glue, web.js, built by scripts/build-page.sh),
// started once per worker.

import init, { amountTable, blendAmount, Engine, sha256 } from './web.js';
import './relaxed-simd.js';

// Two builds of one engine (one glue, web.js): the CPU kernels on relaxed SIMD's multiply-add
// where the browser validates it, on plain SIMD where not or where the page's ?simd=plain
// named the worker so (bridge.js; the browser tests check both builds).
const RELAXED = self.BRN_RELAXED_SIMD && self.name !== 'plain-simd';
const WASM = new URL(RELAXED ? './web_relaxed_bg.wasm' : './web_bg.wasm', import.meta.url);
let started = null;

/** The module's exports (its memory's size is reported), instantiated on the first call. */
export function startWasm() {
  started = started || init({ module_or_path: WASM });
  return started;
}

/** A worker's error as a person reads it. */
export function errorText(e) {
  if (e instanceof WebAssembly.RuntimeError) return `internal error (${e.message})`;
  return (e && e.message) || String(e);
}

/** A wasm trap leaves the module unusable: the worker must be replaced. */
export const isFatal = (e) => e instanceof WebAssembly.RuntimeError;

export { amountTable, blendAmount, Engine, sha256 };
