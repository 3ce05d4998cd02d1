// The page's service worker: after the first visit the page opens and derains without a
// network. It keeps the built page's files (listed, with a content version, by offline.sh in
// offline-manifest.js) in a cache named after that version, answers the page's own requests
// from it, and drops older versions when a new deploy activates. The default weights are
// cached by worker.js itself (Cache API), so they are not downloaded twice. Works from any
// sub-path: everything is relative to this script's folder.
/* global BRN_OFFLINE, BRN_RELAXED_SIMD */
'use strict';

importScripts('./offline-manifest.js');

const PREFIX = 'brn-page-';
const CACHE = `${PREFIX}${BRN_OFFLINE.version}`;
const SCOPE = new URL('./', self.location).href;

// Of the engine's two builds, only the one this browser loads (app/relaxed-simd.js decides,
// for the workers as for this): the other is fetched only if a ?simd=plain page asks for it.
importScripts(BRN_OFFLINE.files.find((file) => file.endsWith('/relaxed-simd.js')));
const UNUSED = BRN_RELAXED_SIMD ? '/web_bg.wasm' : '/web_relaxed_bg.wasm';
const FILES = BRN_OFFLINE.files.filter((file) => !file.endsWith(UNUSED));

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await cache.addAll(FILES.map((file) => new URL(file, SCOPE).href));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith(PREFIX) && key !== CACHE) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

// The page's own files from the cache (query strings such as ?backend=cpu ignored), anything
// else from the network as usual.
self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' || !request.url.startsWith(SCOPE)) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    const hit = await cache.match(request, { ignoreSearch: true });
    return hit || fetch(request);
  })());
});
