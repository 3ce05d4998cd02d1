// The engine worker's weights store (Cache API): the build's default weights, fetched once and
// kept by their version, and a person's own weights file, kept for the next visit. A full or
// disabled cache only costs a download; nothing here fails for want of it.

const CACHE = 'brn-weights-v1';
/** The key of a person's own weights file. */
export const USER_WEIGHTS = 'user-weights/current';
// The build's weights folder, beside index.html (this module lives one folder down).
const WEIGHTS_DIR = new URL('../weights/', import.meta.url);

/** The cached bytes and name under `key`, or null. */
export async function cached(key) {
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

export async function remember(key, bytes, name) {
  if (!self.caches) return;
  try {
    const cache = await caches.open(CACHE);
    await cache.put(key, new Response(bytes, { headers: { 'x-name': name } }));
  } catch (_) { /* a full or disabled cache only costs a re-download */ }
}

export async function forget(key) {
  if (!self.caches) return;
  try { await (await caches.open(CACHE)).delete(key); } catch (_) { /* nothing to forget */ }
}

/** The default weights named by the build's manifest ({bytes, label, source, cached, repaired},
 * or null when the build has none), from the cache when already fetched. Both the cached and
 * the downloaded bytes are checked against the manifest's SHA-256 (`digest(bytes)`, the
 * engine's): a damaged cached copy is dropped and fetched again (`repaired`), a damaged
 * download is not cached and throws. `status(text)` tells of a download. */
export async function defaultWeights(status, digest) {
  const manifest = await (await fetch(new URL('manifest.json', WEIGHTS_DIR), { cache: 'no-cache' })).json();
  if (!manifest.file) return null;
  const url = new URL(`${manifest.file}?v=${manifest.version}`, WEIGHTS_DIR).href;
  const intact = (bytes) => !manifest.sha256 || digest(bytes) === manifest.sha256;
  const found = { label: manifest.label, url, repaired: false };
  const hit = await cached(url);
  if (hit && intact(hit.bytes)) return { ...found, bytes: hit.bytes, source: 'default (cached)', cached: true };
  if (hit) {
    await forget(url);
    found.repaired = true;
    status(`The saved copy of the default weights was damaged; downloading them again (${(manifest.bytes / 1e6).toFixed(1)} MB)…`);
  } else {
    status(`Downloading the default weights (${(manifest.bytes / 1e6).toFixed(1)} MB)…`);
  }
  // Past the HTTP cache too when repairing: it may hold the same damaged bytes.
  const response = await fetch(url, { cache: found.repaired ? 'reload' : 'default' });
  if (!response.ok) throw new Error(`cannot download the default weights (HTTP ${response.status}); check the connection and retry`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (!intact(bytes)) {
    throw new Error(`the default weights arrived damaged (${bytes.length} of ${manifest.bytes} bytes, `
      + 'not the SHA-256 this page was built with); nothing was kept: check the connection and retry');
  }
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
  return { ...found, bytes, source: 'default', cached: false };
}
