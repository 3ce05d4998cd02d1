// Browser bench (issues 4 and 36): for WebGPU (SwiftShader here) and the CPU fallback in a
// headless browser (BRN_BROWSER: chromium, the default, or firefox), the time to the first
// derained result from a cold page (weights fetched, engine started, warm-up run, photo derained)
// and the time per megapixel of a second, warm derain; the native command's time for the same
// image; and, per thread, one native thread's forward (`RAYON_NUM_THREADS=1 brn bench`, the same
// side and T) beside one CPU worker's, with their ratio. The CPU fallback runs once per count of
// Web Workers in BENCH_WORKERS, on the wasm build the browser takes (relaxed SIMD where it
// validates it) and, with BENCH_PLAIN=1, on the plain-SIMD build too. Prints a table.
// With BENCH_PHOTO=WxH (e.g. 4000x3000, a 12 MP phone photo; rain-001.png mirrored to that size),
// a whole photo instead: one derain per run from a cold page (a photo's first), with what the
// page expected beforehand, the tiles each helper ran and the native command's time for it.
//   node bench.mjs   with BRN_DIST, BRN_BIN, BRN_SHARED; BENCH_SIDE (default 256), BENCH_STAGES
//   (default 8), BENCH_WORKERS (CPU worker counts, default 1,2), BENCH_BACKENDS (default
//   webgpu,cpu), BENCH_PLAIN (1: the CPU rows again with ?simd=plain), BENCH_PHOTO
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { crop, decodePng, encodePng } from './png.mjs';
import { BROWSER, derain, launch, native, open, serve } from './harness.mjs';

const dist = path.resolve(process.env.BRN_DIST || '../../dist');
const brn = process.env.BRN_BIN;
const shared = path.resolve(process.env.BRN_SHARED || '../../../shared');
const side = Number(process.env.BENCH_SIDE || 256);
const workerCounts = (process.env.BENCH_WORKERS || '1,2').split(',').map(Number);
const backends = (process.env.BENCH_BACKENDS || 'webgpu,cpu').split(',');
const stages = Number(process.env.BENCH_STAGES || 8);
const source = path.join(shared, 'data/rain100l/rainy/rain-001.png');

const whole = process.env.BENCH_PHOTO ? process.env.BENCH_PHOTO.split('x').map(Number) : null;
if (whole && !(whole.length === 2 && whole.every((n) => Number.isInteger(n) && n > 0))) {
  throw new Error(`BENCH_PHOTO: expected WIDTHxHEIGHT (e.g. 4000x3000), got ${process.env.BENCH_PHOTO}`);
}

/** `image` mirrored back and forth to `width` x `height` (speed does not depend on content). */
function mirrored(image, width, height) {
  const rgba = new Uint8Array(width * height * 4);
  const fold = (i, n) => { const k = i % (2 * n); return k < n ? k : 2 * n - 1 - k; };
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const from = (fold(y, image.height) * image.width + fold(x, image.width)) * 4;
      rgba.set(image.rgba.subarray(from, from + 4), (y * width + x) * 4);
    }
  }
  return { width, height, rgba };
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'brn-bench-'));
const photo = path.join(tmp, 'photo.png');
const decoded = decodePng(fs.readFileSync(source));
fs.writeFileSync(photo, encodePng(whole
  ? mirrored(decoded, whole[0], whole[1]) : crop(decoded, 0, 0, side, side)));
const mp = whole ? (whole[0] * whole[1]) / 1e6 : (side * side) / 1e6;

const server = await serve(dist);
const rows = [];
const runs = [
  ...(backends.includes('webgpu') ? [{ webgpu: true, workers: 1 }] : []),
  ...(backends.includes('cpu') ? workerCounts.map((workers) => ({ webgpu: false, workers })) : []),
  ...(backends.includes('cpu') && process.env.BENCH_PLAIN === '1'
    ? workerCounts.map((workers) => ({ webgpu: false, workers, plain: true })) : []),
];
for (const { webgpu, workers, plain } of runs) {
  const browser = await launch({ webgpu });
  const t0 = Date.now();
  const page = await open(browser.context, `${server.origin}/?workers=${workers}${plain ? '&simd=plain' : ''}`);
  await page.selectOption('#stages', String(stages));
  const expected = await page.textContent('#status');
  const first = await derain(page, photo, 3_600_000, { png: !whole });
  if (first.error) throw new Error(first.error);
  const cold = (Date.now() - t0) / 1000;
  if (whole) {
    const { tilesByHelper } = await page.evaluate(() => window.brnPage);
    const tiles = await page.textContent('#progress-text');
    rows.push({ workers, photo: first.seconds, expected, tiles, tilesByHelper });
    await browser.close();
    continue;
  }
  const warm = await derain(page, photo);
  const backend = await page.evaluate(() => window.brnPage.backend);
  if (process.env.BENCH_SCREENSHOTS) {
    // What a person sees: the result on a desktop and on a phone-sized screen.
    fs.mkdirSync(process.env.BENCH_SCREENSHOTS, { recursive: true });
    await page.screenshot({ path: path.join(process.env.BENCH_SCREENSHOTS, `${backend}-desktop.png`), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: path.join(process.env.BENCH_SCREENSHOTS, `${backend}-phone.png`), fullPage: true });
  }
  // The CPU rows name the engine's kernel (its adapter: "CPU (WebAssembly, wasm relaxed SIMD …)").
  const adapter = await page.evaluate(() => window.brnPage.adapter);
  const simd = /relaxed/.test(adapter) ? 'relaxed SIMD' : 'SIMD';
  const name = backend === 'cpu' ? `cpu, ${workers} worker${workers > 1 ? 's' : ''}, ${simd}` : backend;
  rows.push({ backend: name, workers, cold, perMp: warm.seconds / mp });
  await browser.close();
}
await server.close();

const engine = BROWSER === 'firefox' ? 'Firefox' : 'Chromium';

/** Seconds of one `brn derain` of the photo (the process, start-up included). */
function nativeDerain() {
  const args = ['derain', photo, '-o', path.join(tmp, 'out'), '--stages', String(stages)];
  if (process.env.BRN_WEB_WEIGHTS) args.push('--weights', process.env.BRN_WEB_WEIGHTS);
  const t0 = Date.now();
  native(brn, args);
  return (Date.now() - t0) / 1000;
}

if (whole) {
  // The photo's derain: the page's own time (from the photo given to its result), each run
  // from a cold page, so that it includes what a person's first photo costs.
  console.log(`BRN T=${stages}, a ${whole[0]}x${whole[1]} photo (${mp.toFixed(1)} MP), headless ${engine}, CPU path`);
  for (const r of rows) {
    console.log(`${r.workers} worker${r.workers > 1 ? 's' : ''}: ${r.photo.toFixed(0)} s (${(r.photo / mp).toFixed(1)} s per MP); `
      + `the page expected: "${r.expected.trim()}"; last progress: "${r.tiles.trim()}"; tiles per helper: [${r.tilesByHelper}]`);
  }
  if (brn) console.log(`native brn derain (all threads, process incl. start-up): ${nativeDerain().toFixed(0)} s`);
  fs.rmSync(tmp, { recursive: true, force: true });
  process.exit(0);
}

let nativeSeconds = null;
if (brn) {
  nativeDerain(); // warm the file cache
  nativeSeconds = nativeDerain();
}

// One native thread's forward at the same side and T (whole image, median of 3 warm runs).
let threadPerMp = null;
if (brn) {
  const out = execFileSync(brn, ['bench', '--size', String(side), '--stages', String(stages), '--runs', '3', '--json'],
    { encoding: 'utf8', env: { ...process.env, RAYON_NUM_THREADS: '1' }, stdio: ['ignore', 'pipe', 'ignore'] });
  threadPerMp = JSON.parse(out).median_s / mp;
}

console.log(`BRN T=${stages}, ${side}x${side} crop of rain-001.png (${mp.toFixed(3)} MP)`);
console.log('| backend | first result, cold (s) | warm, s per MP |');
console.log('| --- | --- | --- |');
for (const r of rows) console.log(`| ${r.backend} (headless ${engine}) | ${r.cold.toFixed(1)} | ${r.perMp.toFixed(1)} |`);
if (nativeSeconds !== null) {
  console.log(`| native brn derain (process incl. start-up) | ${nativeSeconds.toFixed(1)} | ${(nativeSeconds / mp).toFixed(1)} |`);
}
if (threadPerMp !== null) {
  console.log(`| native forward, one thread (RAYON_NUM_THREADS=1 brn bench) | | ${threadPerMp.toFixed(1)} |`);
  for (const r of rows.filter((r) => r.backend.startsWith('cpu') && r.workers === 1)) {
    console.log(`one ${engine} CPU worker (${r.backend.split(', ')[2]}) / one native thread: ${(r.perMp / threadPerMp).toFixed(2)}x`);
  }
}
fs.rmSync(tmp, { recursive: true, force: true });
