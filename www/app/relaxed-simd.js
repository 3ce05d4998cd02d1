// Whether this browser takes WebAssembly's relaxed SIMD (a module whose one function uses
// f32x4.relaxed_madd validates): the workers (wasm.js) load the engine's relaxed-SIMD build
// where it does and the plain-SIMD build where not, and the service worker keeps only the one
// this browser loads. A classic script, so that the service worker can importScripts it; the
// workers import it as a module for its one effect, self.BRN_RELAXED_SIMD.
self.BRN_RELAXED_SIMD = (() => {
  const v128 = [253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // v128.const 0
  const body = [0, ...v128, ...v128, ...v128, 253, 133, 2, 11]; // f32x4.relaxed_madd, end
  const module = [0, 97, 115, 109, 1, 0, 0, 0, // \0asm, version 1
    1, 5, 1, 96, 0, 1, 123, // types: () -> v128
    3, 2, 1, 0, // one function of that type
    10, body.length + 2, 1, body.length, ...body]; // its code
  try {
    return WebAssembly.validate(new Uint8Array(module));
  } catch {
    return false;
  }
})();
