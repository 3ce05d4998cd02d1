// The messages between the page, the engine worker and its CPU helper workers, defined once:
// each side builds what it sends with these functions and switches on these types, so a field
// or a type that one side renames fails everywhere at once.
//
//   page → engine worker:      init, helpers, weights, derain, cancel,
//                              amount-table, blend      (questions: each carries an `ask` number)
//   engine worker → page:      status, want-helpers, helpers-dropped, gpu-failed, ready,
//                              weights-loaded, progress, result, error,
//                              answer                   (to a question, the same `ask` number)
//   page → helper worker:      serve (its end of a MessageChannel to the engine worker)
//   engine worker → helper:    helper-weights, tile           (over that channel)
//   helper → engine worker:    helper-loaded, maps, failed    (the same request id)

export const Msg = Object.freeze({
  // page → engine worker
  INIT: 'init',
  HELPERS: 'helpers',
  WEIGHTS: 'weights',
  DERAIN: 'derain',
  CANCEL: 'cancel',
  AMOUNT_TABLE: 'amount-table',
  BLEND: 'blend',
  // engine worker → page
  STATUS: 'status',
  WANT_HELPERS: 'want-helpers',
  HELPERS_DROPPED: 'helpers-dropped',
  GPU_FAILED: 'gpu-failed',
  READY: 'ready',
  WEIGHTS_LOADED: 'weights-loaded',
  PROGRESS: 'progress',
  RESULT: 'result',
  ERROR: 'error',
  ANSWER: 'answer',
  // page → helper worker
  SERVE: 'serve',
  // engine worker ↔ helper worker
  HELPER_WEIGHTS: 'helper-weights',
  TILE: 'tile',
  HELPER_LOADED: 'helper-loaded',
  MAPS: 'maps',
  FAILED: 'failed',
});

// page → engine worker

/** Start the engine: `mode` 'auto' (WebGPU where it works) or 'cpu'; `limitOverride` caps the
 * GPU limits used to size tiles (0: none); `workers` CPU workers wanted, `workersAsked` when the
 * page's ?workers= chose that number (then the memory rule does not lower it). */
export const init = (mode, limitOverride, workers, workersAsked) => ({
  type: Msg.INIT, mode, limitOverride, workers, workersAsked,
});
/** The engine worker's ends of the channels to the helpers it asked for. */
export const helpers = (ports) => ({ type: Msg.HELPERS, ports });
/** A person's weights file (`bytes` transferred, `name` as shown)… */
export const weights = (bytes, name) => ({ type: Msg.WEIGHTS, bytes, name, reset: false });
/** …or back to the build's default weights. */
export const defaultWeights = () => ({ type: Msg.WEIGHTS, bytes: null, name: null, reset: true });
/** Derain a photo file's bytes (transferred) at `stages` T; `keepStages` keeps every stage's views. */
export const derain = (id, file, stages, keepStages) => ({
  type: Msg.DERAIN, id, file, stages, keepStages,
});
/** Stop the derain in progress after its current tile. */
export const cancel = () => ({ type: Msg.CANCEL });
// Questions, answered at once (between a derain's tiles if one runs) by an `answer` message
// with the same `ask` number, which the page's bridge gives each question.
/** The engine's 8-bit blend table at `amount` (0 to 1): 65,536 bytes, entry a * 256 + b. */
export const amountTable = (amount) => ({ type: Msg.AMOUNT_TABLE, amount });
/** A result's PNG (`png`) `amount` (0 to 1) of the way from its photo file (`photo`), blended
 * in linear light, as a PNG (both buffers transferred). */
export const blend = (photo, png, amount) => ({ type: Msg.BLEND, photo, png, amount });

// engine worker → page

/** A line for the status bar. */
export const status = (text) => ({ type: Msg.STATUS, text });
/** Start `count` helper workers and send their channels (a `helpers` message). */
export const wantHelpers = (count) => ({ type: Msg.WANT_HELPERS, count });
/** The helpers were let go (`reason`): the engine worker derains alone. */
export const helpersDropped = (reason) => ({ type: Msg.HELPERS_DROPPED, reason });
/** WebGPU did not start (`reason`): start a fresh engine worker in 'cpu' mode. */
export const gpuFailed = (reason) => ({ type: Msg.GPU_FAILED, reason });
/** The engine is up: `engine` {backend, adapter, tile, reason, workers, memory,
 * stageViewPixels, views: {input, derained, derainedLabel}}, `weights` {label, architecture,
 * stages, source} or null, `estimate` seconds per megapixel on the CPU (null on WebGPU),
 * `notice` a line for the person about the start (e.g. damaged saved weights replaced) or null. */
export const ready = (engine, weightsInfo, estimate, notice) => ({
  type: Msg.READY, engine, weights: weightsInfo, estimate, notice,
});
/** New weights are in use. */
export const weightsLoaded = (weightsInfo) => ({ type: Msg.WEIGHTS_LOADED, weights: weightsInfo });
/** Derain `id` has `done` of `total` tiles after `seconds`. */
export const progress = (id, done, total, seconds) => ({
  type: Msg.PROGRESS, id, done, total, seconds,
});
/** Derain `id` is done: `fields` {seconds, width, height, png, stagesKept, tile (the side its
 * tiles were planned with), views: [{key, label, rgba}], backend, workers, estimate, memory:
 * {engine, helper}, tilesByHelper}. */
export const result = (id, fields) => ({ type: Msg.RESULT, id, ...fields });
/** What the engine worker was doing (`during`: a message type) failed: `message` for a person,
 * `kind` from the engine (e.g. 'cancelled', 'decode', 'protocol') or null; `fatal` when the
 * worker must be restarted, `helper` when a helper crashed (restart on one worker). */
export const error = (id, during, message, kind, fatal, helper) => ({
  type: Msg.ERROR, id, during, message, kind, fatal, helper,
});

/** The answer to question `ask`: its `value`, or `error` (a message for a person) if it failed. */
export const answer = (ask, value, error) => ({ type: Msg.ANSWER, ask, value, error });

// page → helper worker

/** Serve tiles on `port` (transferred) to the engine worker. */
export const serve = (port) => ({ type: Msg.SERVE, port });

// engine worker ↔ helper worker (each request carries an `id`, its answer the same)

/** Load these weights (the engine worker's, so that the helper computes the same pixels). */
export const helperWeights = (bytes, label) => ({ type: Msg.HELPER_WEIGHTS, bytes, label });
/** Run the network on one tile's planar RGB `pixels` (a Float32Array, transferred). */
export const tile = (pixels, width, height, stages, allStages) => ({
  type: Msg.TILE, pixels, width, height, stages, allStages,
});
/** The helper loaded the weights of request `id`. */
export const helperLoaded = (id) => ({ type: Msg.HELPER_LOADED, id });
/** A tile's maps (Float32Arrays, transferred, in the engine's layout) and the helper's wasm memory. */
export const maps = (id, tileMaps, memory) => ({ type: Msg.MAPS, id, maps: tileMaps, memory });
/** Request `id` failed (`message`); `fatal` when the helper's engine is unusable. */
export const failed = (id, message, fatal) => ({ type: Msg.FAILED, id, message, fatal });
