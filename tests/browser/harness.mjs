// What the browser tests and the browser bench share: a static server for dist/ on 127.0.0.1
// (at / and at a sub-path), the browser (BRN_BROWSER: `chromium`, the default, Debian Chromium
// driven by playwright-core; or `firefox`, Debian's Firefox ESR through firefox.mjs), and page
// helpers.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { launchFirefox } from './firefox.mjs';

/** Which browser the tests drive. */
export const BROWSER = process.env.BRN_BROWSER || 'chromium';
if (!['chromium', 'firefox'].includes(BROWSER)) throw new Error(`BRN_BROWSER=${BROWSER}: chromium or firefox`);

export const SUB_PATH = '/demo/brn/';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css',
  '.wasm': 'application/wasm', '.json': 'application/json', '.png': 'image/png',
};

/** Serve `dist` read-only at / and at SUB_PATH; every request is logged in `requests`.
 * `damage(part)` makes the server flip one byte in the middle of every file whose URL contains
 * `part` (a connection that corrupts a download), `damage(null)` stops it. */
export async function serve(dist) {
  const requests = [];
  let damaged = null;
  const server = http.createServer((req, res) => {
    let body = 0;
    req.on('data', (c) => { body += c.length; });
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, body });
      let url = decodeURIComponent(req.url.split('?')[0]);
      if (url.startsWith(SUB_PATH)) url = `/${url.slice(SUB_PATH.length)}`;
      if (url.endsWith('/')) url += 'index.html';
      const file = path.join(dist, path.normalize(url));
      if (!file.startsWith(dist) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
        res.writeHead(404);
        res.end('not found');
        return;
      }
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream' });
      if (damaged && req.url.includes(damaged)) {
        const bytes = fs.readFileSync(file);
        bytes[bytes.length >> 1] ^= 0xff;
        res.end(bytes);
        return;
      }
      fs.createReadStream(file).pipe(res);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  let running = true;
  // Stop serving (open connections too), as a network gone away; safe to call twice.
  const close = () => new Promise((resolve) => {
    if (!running) { resolve(); return; }
    running = false;
    server.close(() => resolve());
    server.closeAllConnections();
  });
  const damage = (part) => { damaged = part; };
  return { origin, requests, close, damage };
}

/** The browser, headless: {context (newPage), close, requests (every request seen)}.
 * Chromium: `webgpu` adds --enable-unsafe-webgpu (SwiftShader here). Firefox: as it comes. */
export async function launch({ webgpu }) {
  if (BROWSER === 'firefox') return launchFirefox();
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'brn-chromium-'));
  const args = [
    '--no-sandbox', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-quic', '--disable-default-apps',
    '--disable-features=MediaRouter,OptimizationHints,Translate',
  ];
  if (webgpu) args.push('--enable-unsafe-webgpu');
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args,
  });
  // Every request any page or worker of this browser makes, as the browser reports it.
  const requests = [];
  context.on('request', (r) => {
    const body = r.postDataBuffer();
    requests.push({ url: r.url(), method: r.method(), body: body ? body.length : 0 });
  });
  const close = async () => {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  };
  return { context, close, requests };
}

/** Open the page and wait until the engine is ready (or failed) and the service worker has
 * taken its files for offline use (so that its downloads never overlap a derain). */
export async function open(context, url, timeout = 300_000) {
  const page = await context.newPage();
  page.on('console', (m) => { if (process.env.BRN_BROWSER_LOG) console.log(`  [page] ${m.text()}`); });
  page.on('pageerror', (e) => console.log(`  [page error] ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(() => ['ready', 'no-weights', 'failed'].includes(window.brnPage.state)
    && window.brnPage.offline !== 'installing', null, { timeout });
  return page;
}

/** Wait until the page's queue has no photo waiting or working; returns the queue. */
export async function queueSettled(page, count, timeout = 600_000) {
  await page.waitForFunction((n) => window.brnPage.queue.length >= n
    && window.brnPage.queue.every((i) => !['waiting', 'working'].includes(i.status)), count, { timeout, polling: 100 });
  return page.evaluate(() => window.brnPage.queue);
}

/** Give the page a file through its picker and wait for the result (or an error). */
export async function derain(page, file, timeout = 600_000, { png = true } = {}) {
  const before = await page.evaluate(() => ({ results: window.brnPage.results, error: window.brnPage.lastError }));
  await page.evaluate(() => { window.brnPage.lastError = null; window.brnPage.lastErrorKind = null; });
  const t0 = Date.now();
  await page.setInputFiles('#file', file);
  await page.waitForFunction(
    (n) => window.brnPage.results > n || window.brnPage.lastError !== null,
    before.results, { timeout, polling: 100 },
  );
  const seconds = (Date.now() - t0) / 1000;
  // The result's PNG crosses to the test as an array of numbers: minutes for a 12 MP photo's.
  const out = await page.evaluate((withPng) => ({
    error: window.brnPage.lastError,
    png: withPng && window.brnPage.lastPng ? Array.from(window.brnPage.lastPng) : null,
    seconds: window.brnPage.lastSeconds,
    message: document.getElementById('message').hidden ? '' : document.getElementById('message').textContent,
  }), png);
  return { ...out, png: out.png && Uint8Array.from(out.png), wallSeconds: seconds };
}

/** Run the native command; returns its stdout. */
export function native(brn, args) {
  return execFileSync(brn, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
}
