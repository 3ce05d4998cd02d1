// The wasm engine (wasm-bindgen's ES-module glue, web.js, built by scripts/build-page.sh),
// started once per worker.

import init, { amountTable, blendAmount, Engine, sha256 } from './web.js';

const WASM = new URL('./web_bg.wasm', import.meta.url);
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
