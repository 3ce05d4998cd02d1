// Real-browser tests of the page (issue 4), run by ./test.sh after the page build, once in each
// browser engine:
//   node run.mjs   with BRN_DIST (the built dist/), BRN_BIN (the native `brn`), BRN_SHARED,
//                  BRN_BROWSER (chromium, the default, or firefox: harness.mjs).
// The page must have been built with the authors' Rain100L weights (BRN_WEB_WEIGHTS), which the
// native command also uses, so that both outputs can be compared.
//  1. WebGPU (SwiftShader: about 400 pixel-stages a second here, so the work is kept small),
//     GPU limits forced down to 4 MiB so that a 96x80 crop needs 4 tiles of 64: the page's PNG
//     matches the native, untiled derain (PSNR >= 40 dB) and the page says WebGPU. In a browser
//     that offers no WebGPU (Firefox ESR), the page says so, and its CPU derain matches.
//  2. CPU (browser without WebGPU), served from a sub-path: a 200x150 crop matches the native
//     derain (PSNR >= 40 dB), and the page says CPU.
//  2b. Amount: at 0 % the view and the download are the photo's pixels, at 100 % the engine's
//     result; at 40 % the download is the linear-light blend (the sRGB curve written in this
//     test) within a level, and the view shows the download's pixels; the amount survives a
//     reload.
//  3. A non-image and a truncated PNG: a message is shown, and a good image still works after.
//  4. Cancel: a many-tile derain stops at the Cancel button; the next derain still works.
//  4b. Several CPU workers: with 2 workers (helpers sharing the tiles) a 6-tile photo gives
//     the same pixels as with 1, and every helper ran some of its tiles; a cancel that leaves
//     tiles in flight does not disturb the next derain. (Times are printed, never asserted:
//     how much sooner depends on what else the machine runs; tests/browser/bench.mjs measures.)
//  5. The compare view: a portrait photo fits a 1100x1000 window unscaled and a short window
//     scaled down; 1:1 shows the photo's own pixels, 2x doubles them.
//  6. A queue of three photos (one broken) gives two results and one clear error; "Download
//     all" gives a zip (read by Python's zipfile) of the two results, each matching the native
//     derain.
//  7. Drop and paste (synthetic DragEvent / ClipboardEvent with files) derain like the picker.
//  7b. The view switcher lists the engine's named views (derained, rain, each stage's) by key
//     and label, and shows each on the "after" side.
//  7c. Weights cache: a reload does not download the default weights again; a saved copy with
//     one byte flipped fails the manifest's SHA-256, is replaced by a fresh download, the page
//     says so, and the derain matches the native one. A download that the server damages is
//     not kept: the page says so and offers Retry, which downloads, keeps and derains.
//  8. Offline: with the server stopped, a reload of the page (from a sub-path) still derains.
//  9. Privacy: every request went to the page's own origin, none carried a body, and no
//     request at all was made while an image was being derained.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { crop, decodePng, encodePng, psnr } from './png.mjs';
import { execFileSync } from 'node:child_process';
import { BROWSER, SUB_PATH, derain, launch, native, open, queueSettled, serve } from './harness.mjs';

const dist = path.resolve(process.env.BRN_DIST || '../../dist');
// The page's module folder (app-HASH/), where the build put the engine and its probe.
const appFolder = fs.readdirSync(dist).find((name) => name.startsWith('app-'));
const brn = process.env.BRN_BIN;
const shared = path.resolve(process.env.BRN_SHARED || '../../../shared');
const weights = path.join(shared, 'weights/brn/Rain100L.pth');
const source = path.join(shared, 'data/rain100l/rainy/rain-001.png');
const GPU_STAGES = 2;
const CPU_STAGES = 4;
const WORKER_STAGES = 2;
const SMALL_LIMIT = 4 << 20; // 4 MiB per buffer: 64-pixel tiles

for (const [what, p] of [['dist', dist], ['weights', weights], ['test image', source]]) {
  if (!fs.existsSync(p)) {
    console.log(`SKIPPED browser tests: ${what} absent at ${p}`);
    process.exit(0);
  }
}
assert.ok(brn && fs.existsSync(brn), 'BRN_BIN must name the native brn binary');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'brn-browser-'));
const rain001 = decodePng(fs.readFileSync(source));
const testPng = path.join(tmp, 'rainy.png');
fs.writeFileSync(testPng, encodePng(crop(rain001, 100, 80, 200, 150)));
const smallPng = path.join(tmp, 'small.png');
fs.writeFileSync(smallPng, encodePng(crop(rain001, 150, 100, 96, 80)));
const bigPng = path.join(tmp, 'big.png');
fs.writeFileSync(bigPng, encodePng(crop(rain001, 0, 0, 481, 321)));
// 962x642: the photo and its mirror images, two by two; several CPU tiles on any worker count.
const mosaicPng = path.join(tmp, 'mosaic.png');
fs.writeFileSync(mosaicPng, encodePng(mosaic(rain001)));
const portraitPng = path.join(tmp, 'portrait.png');
fs.writeFileSync(portraitPng, encodePng(crop(rain001, 100, 0, 214, 320)));
const notImage = path.join(tmp, 'notes.png');
fs.writeFileSync(notImage, 'this is a text file with a .png name\n'.repeat(20));
const truncated = path.join(tmp, 'truncated.png');
fs.writeFileSync(truncated, fs.readFileSync(testPng).subarray(0, 2000));

/** `image` beside its mirror image, and both above their upside-down mirror: twice each side. */
function mosaic(image) {
  const [w, h] = [image.width, image.height];
  const rgba = new Uint8Array(4 * w * h * 4);
  for (let y = 0; y < 2 * h; y += 1) {
    for (let x = 0; x < 2 * w; x += 1) {
      const [sx, sy] = [x < w ? x : 2 * w - 1 - x, y < h ? y : 2 * h - 1 - y];
      rgba.set(image.rgba.subarray((sy * w + sx) * 4, (sy * w + sx) * 4 + 4), (y * 2 * w + x) * 4);
    }
  }
  return { width: 2 * w, height: 2 * h, rgba };
}

// The independent reference: the native command, untiled where the image fits its default
// 512 tile (these crops do), or tiled as the page tiled (`tile`: the side the page planned).
function reference(file, stages, tile) {
  const out = path.join(tmp, `native-${stages}${tile ? `-tile${tile}` : ''}`);
  native(brn, ['derain', file, '-o', out, '--weights', weights, '--stages', String(stages),
    ...(tile ? ['--tile', String(tile)] : [])]);
  return decodePng(fs.readFileSync(path.join(out, path.basename(file))));
}
const gpuReference = reference(smallPng, GPU_STAGES);
const cpuReference = reference(testPng, CPU_STAGES);
const smallCpuReference = reference(smallPng, CPU_STAGES);

const server = await serve(dist);
let failures = 0;
async function test(name, body) {
  const t0 = Date.now();
  try {
    await body();
    console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failures += 1;
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}

// The page's result against the native derain: within 40 dB on WebGPU (other kernels, other
// sums), 90 on the CPU path (the same kernels' sums in wasm; relaxed SIMD may fuse them).
function compare(png, expected, least = 40) {
  const db = psnr(decodePng(png), expected);
  console.log(`     page vs native: ${db.toFixed(2)} dB`);
  assert.ok(db >= least, `page output differs from the native derain: ${db.toFixed(2)} dB < ${least} dB`);
}

const browserRequests = [];
let requestsWhileDeraining = 0;
// Derain through the page and count the requests made meanwhile (there must be none).
async function derainCounted(browser, page, file) {
  const before = browser.requests.length;
  const out = await derain(page, file);
  requestsWhileDeraining += browser.requests.length - before;
  return out;
}

const gpu = await launch({ webgpu: true });
try {
  const name = BROWSER === 'chromium' ? 'WebGPU: many small tiles match the native untiled derain'
    : 'WebGPU where the browser offers it (many small tiles match the native derain); where not, the page says so and derains on the CPU';
  await test(name, async () => {
    const page = await open(gpu.context, `${server.origin}/?limit=${SMALL_LIMIT}`);
    const backend = await page.evaluate(() => window.brnPage.backend);
    const status = await page.textContent('#status');
    console.log(`     ${await page.evaluate(() => navigator.userAgent)}`);
    console.log(`     status: ${status}`);
    // Chromium here must offer WebGPU (SwiftShader); Firefox ESR offers none yet.
    if (BROWSER !== 'chromium' && !(await page.evaluate(() => 'gpu' in navigator))) {
      assert.equal(backend, 'cpu', `no WebGPU, yet the page says: ${status}`);
      assert.match(status, /CPU \(WebGPU is not available in this browser\)/);
      await page.selectOption('#stages', String(GPU_STAGES));
      const out = await derainCounted(gpu, page, smallPng);
      assert.equal(out.error, null, out.error);
      compare(out.png, gpuReference);
      await page.close();
      return;
    }
    assert.equal(backend, 'webgpu', `expected WebGPU, page says: ${status}`);
    assert.match(status, /WebGPU/);
    await page.selectOption('#stages', String(GPU_STAGES));
    const out = await derainCounted(gpu, page, smallPng);
    assert.equal(out.error, null, out.error);
    const tiles = await page.textContent('#progress-text');
    console.log(`     ${tiles}; ${out.seconds.toFixed(1)} s`);
    assert.match(tiles, /tile 4 of 4/);
    compare(out.png, gpuReference);
    await page.close();
  });
} finally {
  browserRequests.push(...gpu.requests);
  await gpu.close();
}

const cpu = await launch({ webgpu: false });
try {
  let page;
  await test('CPU fallback, served from a sub-path, matches the native derain', async () => {
    page = await open(cpu.context, `${server.origin}${SUB_PATH}`);
    const backend = await page.evaluate(() => window.brnPage.backend);
    const status = await page.textContent('#status');
    console.log(`     status: ${status}`);
    assert.equal(backend, 'cpu', `expected the CPU, page says: ${status}`);
    // The build this browser should load (www/app/relaxed-simd.js's probe), named by the engine.
    const relaxed = await page.evaluate(async (url) => {
      await import(url);
      return self.BRN_RELAXED_SIMD;
    }, `${server.origin}${SUB_PATH}${appFolder}/relaxed-simd.js`);
    const adapter = await page.evaluate(() => window.brnPage.adapter);
    console.log(`     engine: ${adapter}`);
    assert.match(adapter, relaxed ? /^CPU \(WebAssembly, wasm relaxed SIMD/ : /^CPU \(WebAssembly, wasm SIMD f32/);
    await page.selectOption('#stages', String(CPU_STAGES));
    const out = await derainCounted(cpu, page, testPng);
    assert.equal(out.error, null, out.error);
    compare(out.png, cpuReference, 90);
  });

  await test('the plain-SIMD build (?simd=plain, for browsers without relaxed SIMD) matches the native derain', async () => {
    const plain = await open(cpu.context, `${server.origin}${SUB_PATH}?simd=plain`);
    try {
      const adapter = await plain.evaluate(() => window.brnPage.adapter);
      console.log(`     engine: ${adapter}`);
      assert.match(adapter, /^CPU \(WebAssembly, wasm SIMD f32/);
      await plain.selectOption('#stages', String(CPU_STAGES));
      const out = await derainCounted(cpu, plain, testPng);
      assert.equal(out.error, null, out.error);
      compare(out.png, cpuReference, 90);
    } finally {
      await plain.close();
    }
  });

  await test('amount: 0 % shows and downloads the photo, 100 % the engine\'s result, between them their blend in linear light, kept across a reload', async () => {
    await page.selectOption('#stages', String(CPU_STAGES));
    const out = await derainCounted(cpu, page, smallPng);
    assert.equal(out.error, null, out.error);
    const photo = decodePng(fs.readFileSync(smallPng));
    const result = decodePng(out.png);
    const canvas = (id) => page.evaluate((which) => {
      const c = document.getElementById(which);
      return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
    }, id);
    const setAmount = async (percent) => {
      await page.evaluate((p) => {
        const input = document.getElementById('amount');
        input.value = String(p);
        input.dispatchEvent(new Event('input', { bubbles: true }));
        input.dispatchEvent(new Event('change', { bubbles: true }));
      }, percent);
      await page.waitForFunction((p) => window.brnPage.viewAmount === p, percent, { timeout: 60_000 });
    };
    const download = async () => {
      const [file] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
      const saved = path.join(tmp, `amount-${file.suggestedFilename()}`);
      await file.saveAs(saved);
      return { name: file.suggestedFilename(), image: decodePng(fs.readFileSync(saved)) };
    };
    // The sRGB standard's curve (IEC 61966-2-1), written here: the independent reference.
    const linear = (v) => (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    const srgb = (l) => (l <= 0.0031308 ? l * 12.92 : 1.055 * l ** (1 / 2.4) - 0.055);
    try {
      await setAmount(0);
      assert.deepEqual(await canvas('after'), await canvas('before'), 'the view at 0 % is not the photo');
      let got = await download();
      assert.equal(got.name, 'small-derained-amount0.png');
      assert.deepEqual(got.image.rgba, photo.rgba, 'the download at 0 % is not the photo');

      await setAmount(40);
      got = await download();
      assert.equal(got.name, 'small-derained-amount40.png');
      // Stored as the derain's PNG stores its values: truncated, so each value is within the
      // level below the exact blend (a little slack for f32 against f64).
      let [above, below] = [0, 0];
      let moved = 0;
      for (let i = 0; i < photo.rgba.length; i += 4) {
        for (let k = 0; k < 3; k += 1) {
          const [a, b] = [linear(photo.rgba[i + k] / 255), linear(result.rgba[i + k] / 255)];
          const want = srgb(a + 0.4 * (b - a)) * 255;
          above = Math.max(above, got.image.rgba[i + k] - want);
          below = Math.max(below, want - got.image.rgba[i + k]);
          if (got.image.rgba[i + k] !== photo.rgba[i + k]) moved += 1;
        }
      }
      console.log(`     40 %: ${moved} of ${(photo.rgba.length / 4) * 3} values moved; against the curve's blend at most ${above.toFixed(4)} above, ${below.toFixed(4)} below`);
      assert.ok(above < 1e-3 && below < 1 + 1e-3, `the 40 % download is not the linear-light blend (${above}, ${below})`);
      assert.ok(moved > 0, 'the 40 % download did not change the photo');
      const shown = await canvas('after');
      assert.deepEqual(shown.filter((_, i) => i % 4 !== 3), Array.from(got.image.rgba).filter((_, i) => i % 4 !== 3),
        'the view at 40 % is not what its download holds');

      // Kept across a reload; the control shows it.
      await page.reload();
      await page.waitForFunction(() => ['ready', 'failed'].includes(window.brnPage.state), null, { timeout: 300_000 });
      assert.equal(await page.evaluate(() => window.brnPage.amount), 40, 'the amount was not kept');
      assert.equal(await page.inputValue('#amount'), '40');
      await page.selectOption('#stages', String(CPU_STAGES));
      const again = await derainCounted(cpu, page, smallPng);
      assert.equal(again.error, null, again.error);
      await page.waitForFunction(() => window.brnPage.viewAmount === 40, null, { timeout: 60_000 });

      await setAmount(100);
      assert.deepEqual(await canvas('after'), Array.from(result.rgba), 'the view at 100 % is not the engine\'s result');
      got = await download();
      assert.equal(got.name, 'small-derained.png');
      assert.deepEqual(got.image.rgba, result.rgba, 'the download at 100 % is not the engine\'s result');
    } finally {
      // The tests after this one compare downloads with the native derain: back to 100 %.
      await setAmount(100).catch(() => {});
    }
  });

  await test('bad files show a message and the page stays usable', async () => {
    const junk = await derainCounted(cpu, page, notImage);
    assert.ok(junk.error, 'a text file was accepted');
    assert.match(junk.message, /Could not derain/);
    const cut = await derainCounted(cpu, page, truncated);
    assert.ok(cut.error, 'a truncated PNG was accepted');
    assert.match(cut.message, /truncated|corrupt|decode/i);
    console.log(`     messages: "${junk.message}" / "${cut.message}"`);
    const good = await derainCounted(cpu, page, testPng);
    assert.equal(good.error, null, good.error);
    compare(good.png, cpuReference);
  });

  await test('a queue of three photos (one broken) gives two results, one clear error, and a zip of both', async () => {
    await page.selectOption('#stages', String(CPU_STAGES));
    // The earlier tests' photos are in the list: "Clear finished" empties it.
    await page.click('#clear-finished');
    assert.equal(await page.evaluate(() => window.brnPage.queue.length), 0, 'finished photos were kept');
    await page.setInputFiles('#file', [testPng, truncated, smallPng]);
    const queue = await queueSettled(page, 3);
    console.log(`     queue: ${queue.map((i) => `${i.name} ${i.status}${i.message ? ` (${i.message})` : ''}`).join('; ')}`);
    assert.deepEqual(queue.map((i) => i.status), ['done', 'failed', 'done']);
    assert.match(queue[1].message, /truncated|corrupt|decode/i);
    assert.equal(await page.isVisible('#queue'), true, 'the queue is not shown');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-all')]);
    const zip = path.join(tmp, 'all.zip');
    await download.saveAs(zip);
    const listing = JSON.parse(execFileSync('python3', ['-c', `
import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
json.dump([[i.filename, z.read(i).hex()] for i in z.infolist()], sys.stdout)`, zip], { encoding: 'utf8' }));
    console.log(`     zip: ${listing.map(([name, hex]) => `${name} (${hex.length / 2} bytes)`).join(', ')}`);
    assert.deepEqual(listing.map(([name]) => name), ['rainy-derained.png', 'small-derained.png']);
    compare(Buffer.from(listing[0][1], 'hex'), cpuReference);
    compare(Buffer.from(listing[1][1], 'hex'), smallCpuReference);
  });

  await test('drop and paste derain like the picker', async () => {
    const bytes = [...fs.readFileSync(smallPng)];
    for (const how of ['drop', 'paste']) {
      const results = await page.evaluate(() => {
        window.brnPage.lastError = null;
        return window.brnPage.results;
      });
      await page.evaluate(({ bytes, how }) => {
        const data = new DataTransfer();
        data.items.add(new File([new Uint8Array(bytes)], `${how}.png`, { type: 'image/png' }));
        const event = how === 'drop'
          ? new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true })
          : new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true });
        // Firefox's ClipboardEvent constructor gives the event a copy of clipboardData without
        // its files (Firefox ESR 153; a headless Ctrl+V after navigator.clipboard.write of a PNG
        // gave a paste with no items either), so the event is given this DataTransfer itself:
        // the page's handler reads it as it reads a real paste's.
        if (how === 'paste' && event.clipboardData.files.length === 0) {
          Object.defineProperty(event, 'clipboardData', { value: data });
        }
        document.dispatchEvent(event);
      }, { bytes, how });
      await page.waitForFunction((n) => window.brnPage.results > n || window.brnPage.lastError, results, { timeout: 300_000 });
      const out = await page.evaluate(() => ({ png: Array.from(window.brnPage.lastPng), last: window.brnPage.queue.at(-1) }));
      assert.deepEqual([out.last.name, out.last.status], [`${how}.png`, 'done'], JSON.stringify(out.last));
      compare(Uint8Array.from(out.png), smallCpuReference);
    }
  });

  await test('the views are named by the engine: the switcher lists them and shows each', async () => {
    await page.check('#keep-stages');
    await page.selectOption('#stages', '2');
    const out = await derainCounted(cpu, page, smallPng);
    assert.equal(out.error, null, out.error);
    const options = await page.evaluate(() => [...document.querySelectorAll('#view option')].map((o) => [o.value, o.textContent]));
    console.log(`     views: ${options.map(([key]) => key).join(', ')}`);
    assert.deepEqual(options, [
      ['derained', 'Derained'], ['rain', 'Rain layer'],
      ['stage1-background', 'Stage 1 background'], ['stage2-background', 'Stage 2 background'],
      ['stage1-rain', 'Stage 1 rain'], ['stage2-rain', 'Stage 2 rain'],
    ]);
    const after = () => page.evaluate(() => {
      const c = document.getElementById('after');
      return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
    });
    const shown = {};
    for (const key of ['derained', 'stage2-background', 'stage1-rain']) {
      await page.selectOption('#view', key);
      shown[key] = await after();
    }
    // T = 2: the last stage's background is the derained photo; a rain map is another picture.
    assert.deepEqual(shown['stage2-background'], shown.derained);
    assert.notDeepEqual(shown['stage1-rain'], shown.derained);
    await page.uncheck('#keep-stages');
  });

  await test('Cancel stops a many-tile derain; the next one works', async () => {
    await page.setInputFiles('#file', mosaicPng);
    await page.waitForFunction(() => /tile [1-9]/.test(document.getElementById('progress-text').textContent), null, { timeout: 300_000 });
    await page.click('#cancel');
    await page.waitForFunction(() => window.brnPage.lastErrorKind === 'cancelled', null, { timeout: 300_000 });
    const text = await page.textContent('#progress-text');
    console.log(`     stopped at: ${text}`);
    assert.doesNotMatch(text, /tile (\d+) of \1\b/, 'every tile ran despite Cancel');
    const good = await derainCounted(cpu, page, testPng);
    assert.equal(good.error, null, good.error);
  });
  await test('2 CPU workers share the tiles of a plan made for two; 1 and 2 workers each match the native derain of their plan', async () => {
    const run = async (workers, cancelFirst) => {
      const p = await open(cpu.context, `${server.origin}${SUB_PATH}?workers=${workers}`);
      const status = await p.textContent('#status');
      console.log(`     status: ${status}`);
      assert.equal(await p.evaluate(() => window.brnPage.workers), workers, status);
      const own = Number(await p.inputValue('#stages')); // the weights' T, chosen at first
      assert.notEqual(own, WORKER_STAGES, 'the test needs weights whose own T is not WORKER_STAGES');
      await p.selectOption('#stages', String(WORKER_STAGES));
      // The page's time per megapixel follows the T chosen: checked against the status line
      // before the choice, within the display's rounding.
      const after = await p.textContent('#status');
      const perMp = (text) => {
        const m = text.match(/expect about (?:(\d+) min )?([\d.]+) (s|ms) per megapixel/);
        assert.ok(m, `no time per megapixel in: ${text}`);
        return Number(m[1] || 0) * 60 + Number(m[2]) / (m[3] === 'ms' ? 1000 : 1);
      };
      assert.match(after, new RegExp(`per megapixel at T = ${WORKER_STAGES}\\b`), after);
      const ratio = perMp(after) / perMp(status);
      assert.ok(Math.abs(ratio - WORKER_STAGES / own) < 0.02, `${after} against ${status}`);
      if (cancelFirst) {
        await p.setInputFiles('#file', mosaicPng);
        await p.waitForFunction(() => /tile [1-9]/.test(document.getElementById('progress-text').textContent), null, { timeout: 300_000 });
        await p.click('#cancel');
        await p.waitForFunction(() => window.brnPage.lastErrorKind === 'cancelled', null, { timeout: 300_000 });
      }
      const out = await derainCounted(cpu, p, bigPng);
      assert.equal(out.error, null, out.error);
      const { memory, tilesByHelper, lastTile } = await p.evaluate(() => window.brnPage);
      const tiles = await p.textContent('#progress-text');
      await p.close();
      return { ...out, memory, tiles, tilesByHelper, tile: lastTile };
    };
    const one = await run(1, false);
    const two = await run(2, false);
    // After a cancelled derain: its late tile may keep a helper busy, and is not counted.
    const again = await run(2, true);
    const mp = (481 * 321) / 1e6;
    const mib = (b) => (b / 2 ** 20).toFixed(0);
    console.log(`     ${one.tiles}; 1 worker ${one.seconds.toFixed(1)} s (${(one.seconds / mp).toFixed(0)} s/MP, wasm memory ${mib(one.memory.engine)} MiB), `
      + `2 workers ${two.seconds.toFixed(1)} s (${(two.seconds / mp).toFixed(0)} s/MP, engine ${mib(two.memory.engine)} MiB + ${mib(two.memory.helper)} MiB a helper; `
      + `tiles per helper: ${two.tilesByHelper.join(', ')})`);
    // One worker: the photo in one tile (it fits the largest, 512), as the command line
    // derains it. Two: the plan for two (two tiles of 273x321, one each; model::tiling's
    // balanced_tile), every tile run by a helper, the pixels those of the native derain
    // planned with the same tile side.
    console.log(`     tile side planned: ${one.tile} on 1 worker, ${two.tile} on 2`);
    assert.match(one.tiles, /tile 1 of 1\b/);
    assert.deepEqual(one.tilesByHelper, [], 'one worker started helpers');
    compare(one.png, reference(bigPng, WORKER_STAGES), 90);
    const [, planned] = two.tiles.match(/tile \d+ of (\d+)/);
    assert.equal(Number(planned), 2, `the plan for 2 workers: ${two.tiles}`);
    assert.equal(two.tilesByHelper.length, 2, 'two workers are two helpers');
    assert.ok(two.tilesByHelper.every((n) => n > 0), `a helper ran no tile: ${two.tilesByHelper}`);
    assert.equal(two.tilesByHelper.reduce((a, b) => a + b, 0), 2, 'the helpers did not run the 2 tiles between them');
    compare(two.png, reference(bigPng, WORKER_STAGES, two.tile), 90);
    assert.equal(again.tilesByHelper.reduce((a, b) => a + b, 0), 2, `after a cancel: ${again.tilesByHelper}`);
    assert.deepEqual(decodePng(again.png), decodePng(two.png), 'a cancelled derain changed the next one\'s pixels');
  });
  await test('the compare view fits the window, never enlarges, and zooms to the photo\'s own pixels', async () => {
    await page.setViewportSize({ width: 1100, height: 1000 });
    await page.selectOption('#stages', '1');
    const out = await derainCounted(cpu, page, portraitPng);
    assert.equal(out.error, null, out.error);
    const view = () => page.evaluate(() => {
      // A plain object: WebDriver BiDi does not serialize a DOMRect's fields.
      const rect = (id) => {
        const r = document.getElementById(id).getBoundingClientRect();
        return { width: r.width, height: r.height };
      };
      const canvas = document.getElementById('after');
      return {
        compare: rect('compare'), after: rect('after'), result: rect('result'),
        pixels: [canvas.width, canvas.height], rendering: getComputedStyle(canvas).imageRendering,
        window: [innerWidth, innerHeight], zoom: window.brnPage.zoom,
      };
    });
    // 214x320 in a 1100x1000 window: shown at its own size (not enlarged), the whole result
    // section (toolbar, photo, hint) shorter than the window.
    let v = await view();
    console.log(`     fit in 1100x1000: ${v.after.width}x${v.after.height} of ${v.pixels.join('x')}; result section ${Math.round(v.result.height)} px tall`);
    assert.equal(v.zoom, 'fit');
    assert.ok(Math.abs(v.after.width - 214) < 0.5 && Math.abs(v.after.height - 320) < 0.5, 'not enlarged, not shrunk');
    assert.ok(v.result.height <= v.window[1], 'the result needs scrolling');
    // A window too short for it: the photo shrinks to fit both dimensions.
    await page.setViewportSize({ width: 1100, height: 300 });
    // The page lays out again on the window's resize event.
    await page.waitForFunction(() => document.getElementById('compare').getBoundingClientRect().height <= 300, null, { timeout: 5000 }).catch(() => {});
    v = await view();
    console.log(`     fit in 1100x300: ${v.after.width.toFixed(1)}x${v.after.height.toFixed(1)}`);
    assert.ok(v.compare.height <= 300 && v.after.height < 320, 'the photo does not fit a short window');
    assert.ok(Math.abs(v.after.width / v.after.height - 214 / 320) < 0.01, 'aspect ratio kept');
    // 1:1 shows the photo's own pixels (one CSS pixel each, nearest-neighbour), 2x doubles them.
    await page.setViewportSize({ width: 1100, height: 1000 });
    await page.waitForFunction(() => document.getElementById('after').getBoundingClientRect().height > 319, null, { timeout: 5000 }).catch(() => {});
    await page.click('button[data-zoom="1"]');
    v = await view();
    assert.equal(v.zoom, 1);
    assert.ok(Math.abs(v.after.width - 214) < 0.5 && Math.abs(v.after.height - 320) < 0.5);
    assert.equal(v.rendering, 'pixelated');
    await page.click('button[data-zoom="2"]');
    v = await view();
    assert.equal(v.zoom, 2);
    assert.ok(Math.abs(v.after.width - 428) < 0.5 && Math.abs(v.after.height - 640) < 0.5, `2x is ${v.after.width}x${v.after.height}`);
    await page.click('button[data-zoom="fit"]');
  });
  await test('weights are cached: a reload does not download them again', async () => {
    const fetched = () => server.requests.filter((r) => r.url.includes('/weights/default.')).length;
    const before = fetched();
    assert.ok(before >= 1, 'the default weights were downloaded once');
    await page.reload();
    await page.waitForFunction(() => ['ready', 'failed'].includes(window.brnPage.state), null, { timeout: 300_000 });
    assert.equal(await page.evaluate(() => window.brnPage.state), 'ready');
    assert.equal(fetched(), before, 'the reload fetched the weights again');
  });
  await test('a damaged saved copy of the default weights is found by its hash and replaced', async () => {
    const fetched = () => server.requests.filter((r) => r.url.includes('/weights/default.')).length;
    const before = fetched();
    // One byte flipped in the middle of the saved copy (the worker's Cache API cache): the
    // record still parses, so only the hash check can tell.
    const damaged = await page.evaluate(async () => {
      const cache = await caches.open('brn-weights-v1');
      const keys = (await cache.keys()).filter((r) => r.url.includes('/weights/default.'));
      for (const key of keys) {
        const hit = await cache.match(key);
        const bytes = new Uint8Array(await hit.arrayBuffer());
        bytes[bytes.length >> 1] ^= 0xff;
        await cache.put(key, new Response(bytes, { headers: { 'x-name': hit.headers.get('x-name') } }));
      }
      return keys.length;
    });
    assert.equal(damaged, 1, 'one saved copy of the default weights');
    await page.reload();
    await page.waitForFunction(() => ['ready', 'failed'].includes(window.brnPage.state), null, { timeout: 300_000 });
    assert.equal(await page.evaluate(() => window.brnPage.state), 'ready', await page.textContent('#status'));
    const notice = await page.evaluate(() => window.brnPage.notice);
    assert.match(notice || '', /damaged/, 'the page says the saved weights were replaced');
    assert.match(await page.textContent('#message'), /damaged/);
    assert.equal(fetched(), before + 1, 'the weights were downloaded once more');
    await page.selectOption('#stages', String(CPU_STAGES));
    const out = await derainCounted(cpu, page, smallPng);
    assert.equal(out.error, null, out.error);
    compare(out.png, smallCpuReference);
  });
  await test('a damaged download of the default weights is not kept: the page says so, and Retry recovers', async () => {
    const fetched = () => server.requests.filter((r) => r.url.includes('/weights/default.')).length;
    const saved = () => page.evaluate(async () => (await (await caches.open('brn-weights-v1')).keys()).length);
    // No saved copy, so the next start downloads the weights, and the server damages them.
    await page.evaluate(() => caches.delete('brn-weights-v1'));
    const before = fetched();
    server.damage('/weights/default.');
    try {
      await page.reload();
      await page.waitForFunction(() => ['ready', 'failed'].includes(window.brnPage.state), null, { timeout: 300_000 });
      const status = await page.textContent('#status');
      console.log(`     status: ${status}`);
      assert.equal(await page.evaluate(() => window.brnPage.state), 'failed', 'damaged weights were used');
      assert.equal(fetched(), before + 1, 'the weights were not downloaded');
      assert.match(status, /arrived damaged.*nothing was kept.*retry/);
      assert.equal(await page.isVisible('#retry'), true, 'no Retry button');
      assert.equal(await saved(), 0, 'the damaged download was kept');
    } finally {
      server.damage(null);
    }
    await page.click('#retry');
    await page.waitForFunction(() => ['ready', 'failed'].includes(window.brnPage.state), null, { timeout: 300_000 });
    assert.equal(await page.evaluate(() => window.brnPage.state), 'ready', await page.textContent('#status'));
    assert.equal(fetched(), before + 2, 'Retry did not download the weights again');
    assert.equal(await saved(), 1, 'the good download was not kept');
    await page.selectOption('#stages', String(CPU_STAGES));
    const out = await derainCounted(cpu, page, smallPng);
    assert.equal(out.error, null, out.error);
    compare(out.png, smallCpuReference);
  });
  await test('offline: with the server stopped, a reload from the sub-path still derains', async () => {
    await page.waitForFunction(() => window.brnPage.offline === 'ready', null, { timeout: 60_000 });
    await server.close();
    await page.reload();
    await page.waitForFunction(() => ['ready', 'failed'].includes(window.brnPage.state), null, { timeout: 300_000 });
    assert.equal(await page.evaluate(() => window.brnPage.state), 'ready', await page.textContent('#status'));
    await page.selectOption('#stages', String(CPU_STAGES));
    const out = await derainCounted(cpu, page, smallPng);
    assert.equal(out.error, null, out.error);
    compare(out.png, smallCpuReference);
  });
  if (page) await page.close();
} finally {
  browserRequests.push(...cpu.requests);
  await cpu.close();
}

await test('privacy: only own-origin requests, none with a body, none while deraining', async () => {
  assert.ok(server.requests.length > 0);
  assert.equal(requestsWhileDeraining, 0, `${requestsWhileDeraining} requests while deraining`);
  for (const r of browserRequests) {
    const own = r.url.startsWith(`${server.origin}/`) || r.url.startsWith('blob:') || r.url.startsWith('data:');
    assert.ok(own, `a request left the page's origin: ${r.method} ${r.url.slice(0, 120)}`);
    assert.equal(r.body, 0, `${r.method} ${r.url} carried ${r.body} bytes`);
  }
  for (const r of server.requests) {
    assert.equal(r.body, 0, `${r.method} ${r.url} carried ${r.body} bytes`);
    assert.ok(['GET', 'HEAD'].includes(r.method), `${r.method} ${r.url}`);
    assert.ok(r.url.length < 200, `suspiciously long URL ${r.url.slice(0, 80)}…`);
  }
  console.log(`     browser made ${browserRequests.length} requests (server saw ${server.requests.length}), all own-origin GETs without a body; ${requestsWhileDeraining} while deraining`);
});

await server.close();
fs.rmSync(tmp, { recursive: true, force: true });
if (failures) {
  console.log(`${failures} browser test(s) failed in ${BROWSER}`);
  process.exit(1);
}
console.log(`all browser tests passed in ${BROWSER}`);
