// Where the page's CPU path spends its time (issue 36): runs the wasm engine's runTile in node
// (V8, as in Chromium) on one tile under V8's sampling profiler and prints the functions with
// the most time of their own. Needs a build whose wasm keeps its function names
// (scripts/profile-page-cpu.sh makes one and runs this).
//   node --cpu-prof --cpu-prof-dir=DIR profile.mjs GLUE_DIR WEIGHTS [SIDE=214] [RUNS=3]
//   node profile.mjs --report DIR/*.cpuprofile [TOP=15]
import { readFileSync } from 'node:fs';
import path from 'node:path';

if (process.argv[2] === '--report') {
  const profile = JSON.parse(readFileSync(process.argv[3], 'utf8'));
  const names = new Map(profile.nodes.map((n) => [n.id, n.callFrame.functionName || '(anonymous)']));
  const own = new Map();
  profile.samples.forEach((id, i) => {
    const name = names.get(id).replace(/::h[0-9a-f]{16}$/, '');
    own.set(name, (own.get(name) || 0) + profile.timeDeltas[i]);
  });
  const total = [...own.values()].reduce((a, b) => a + b, 0);
  const top = [...own.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(process.argv[4] || 15));
  for (const [name, us] of top) {
    console.log(`${((100 * us) / total).toFixed(1).padStart(5)} %  ${(us / 1e6).toFixed(2).padStart(6)} s  ${name.slice(0, 120)}`);
  }
} else {
  const [glue, weights] = process.argv.slice(2, 4);
  const side = Number(process.argv[4] || 214);
  const runs = Number(process.argv[5] || 3);
  const { initSync, Engine } = await import(path.resolve(glue, 'web.js'));
  const wasm = initSync({ module: readFileSync(path.join(glue, 'web_bg.wasm')) });
  const engine = Engine.cpu();
  engine.loadWeights(readFileSync(weights), path.basename(weights));
  console.log(`${engine.adapter}; ${side}x${side} tile, T = 4`);
  // A fixed pseudo-random photo (speed does not depend on its content).
  const pixels = new Float32Array(3 * side * side);
  let s = 1;
  for (let i = 0; i < pixels.length; i += 1) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    pixels[i] = (s >>> 8) / 16777216;
  }
  for (let r = 0; r < runs; r += 1) {
    const t0 = performance.now();
    engine.runTile(pixels, side, side, 4, false);
    const seconds = (performance.now() - t0) / 1000;
    console.log(`run ${r + 1}: ${seconds.toFixed(2)} s, ${(seconds / ((side * side) / 1e6)).toFixed(1)} s per MP computed; wasm memory ${(wasm.memory.buffer.byteLength / 2 ** 20).toFixed(0)} MiB`);
  }
}
