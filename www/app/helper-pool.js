// The engine worker's CPU helpers: {port, busy, pending: Map(id → {resolve, reject}), tiles},
// one request at a time each, answered by id. The engine's `share` sends a tile to a free helper.

import * as protocol from './protocol.js';
import { Msg } from './protocol.js';
import { errorText } from './wasm.js';

let helpers = [];
let idleWaiters = []; // tile requests waiting for a helper to be free
let nextRequest = 1;
let crashed = false; // a helper's wasm trapped: the page restarts every worker
let largestMemory = 0; // the largest wasm memory a helper reported, in bytes
let derainId = 0; // the derain in progress (helpers count its tiles)

/** How many helpers there are (0: the engine worker derains alone). */
export const helperCount = () => helpers.length;
/** Whether a helper's engine crashed (then every worker must be restarted). */
export const helperCrashed = () => crashed;
/** The largest wasm memory a helper reported, in bytes. */
export const helperMemory = () => largestMemory;
/** How many tiles each helper ran for the current derain. */
export const tilesByHelper = () => helpers.map((h) => h.tiles);

// One request to a helper; resolves to its answer, rejects with its error.
function ask(helper, msg, transfer) {
  return new Promise((resolve, reject) => {
    const id = nextRequest++;
    helper.pending.set(id, { resolve, reject });
    helper.port.postMessage({ ...msg, id }, transfer || []);
  });
}

function answered(helper, msg) {
  const waiter = helper.pending.get(msg.id);
  if (!waiter) return;
  helper.pending.delete(msg.id);
  if (msg.type === Msg.FAILED) {
    if (msg.fatal) crashed = true;
    waiter.reject(new Error(msg.message));
  } else {
    waiter.resolve(msg);
  }
}

/** Take the page's channels to the helpers. */
export function connect(ports) {
  helpers = ports.map((port) => {
    const helper = { port, busy: false, pending: new Map(), tiles: 0 };
    port.onmessage = (e) => answered(helper, e.data);
    return helper;
  });
}

/** Let the helpers go; `post(msg)` tells the page why. */
export function dropHelpers(why, post) {
  for (const h of helpers) h.port.close();
  helpers = [];
  crashed = false;
  post(protocol.helpersDropped(why));
}

/** Load the engine worker's weights in every helper; helpers that cannot are let go. */
export async function loadInHelpers(bytes, label, post) {
  try {
    await Promise.all(helpers.map((h) => ask(h, protocol.helperWeights(bytes, label))));
  } catch (e) {
    dropHelpers(`a CPU worker could not start (${errorText(e)})`, post);
  }
}

/** A new derain starts: its tiles are counted from zero. */
export function startDerain(id) {
  derainId = id;
  for (const h of helpers) h.tiles = 0;
}

// A free helper (tiles are never more than helpers in flight, but a cancelled derain's tiles
// may still be finishing when the next derain starts).
function idleHelper() {
  const free = helpers.find((h) => !h.busy);
  if (free) {
    free.busy = true;
    return Promise.resolve(free);
  }
  return new Promise((resolve) => idleWaiters.push(resolve));
}

function release(helper) {
  const next = idleWaiters.shift();
  if (next) next(helper);
  else helper.busy = false;
}

/** The engine's `share`: one tile's maps from a helper. */
export async function share(pixels, width, height, stages, allStages) {
  const derain = derainId;
  const helper = await idleHelper();
  try {
    const answer = await ask(helper, protocol.tile(pixels, width, height, stages, allStages), [pixels.buffer]);
    largestMemory = Math.max(largestMemory, answer.memory);
    // Counted for the derain that asked (a cancelled one's late tiles are not the next one's).
    if (derain === derainId) helper.tiles += 1;
    return answer.maps;
  } finally {
    release(helper);
  }
}
