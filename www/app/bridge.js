// The page's side of the workers: the engine worker (worker.js: the wasm engine, its weights and
// every derain) and, on the CPU with several workers, the helper workers that run tiles for it,
// each connected to the engine worker by a channel of its own. Engine life is handled here
// (status, helpers, WebGPU failing over to the CPU); every other message goes to the handler
// the page registered for its type.

import * as protocol from './protocol.js';
import { Msg } from './protocol.js';
import { plainSimd, setPhase, state, workersAsked } from './state.js';
import { setStatus, showMessage } from './ui.js';

const WORKER = new URL('./worker.js', import.meta.url);
// The worker's name carries ?simd=plain to it (wasm.js): its URL's query would not survive the
// service worker, which answers with the cached script's own URL.
const spawn = () => new Worker(WORKER, { type: 'module', name: plainSimd ? 'plain-simd' : 'brn' });

let handlers = {};
// The questions sent and not yet answered: ask number → {resolve, reject}.
const asked = new Map();
let nextAsk = 1;

/** Post `msg` (built with protocol.js) to the engine worker. */
export function send(msg, transfer) {
  state.worker.postMessage(msg, transfer || []);
}

/** Ask the engine worker a question (protocol.js: amount-table, blend); resolves with its
 * answer's value, rejects with an Error a person can read. */
export function ask(msg, transfer) {
  const n = nextAsk++;
  return new Promise((resolve, reject) => {
    asked.set(n, { resolve, reject });
    send({ ...msg, ask: n }, transfer);
  });
}

function answered(msg) {
  const question = asked.get(msg.ask);
  if (!question) return;
  asked.delete(msg.ask);
  if (msg.error) question.reject(new Error(msg.error));
  else question.resolve(msg.value);
}

// A worker that is replaced answers nothing more.
function dropQuestions() {
  for (const question of asked.values()) question.reject(new Error('the engine was restarted; try again'));
  asked.clear();
}

function stopHelpers() {
  for (const helper of state.helpers) helper.terminate();
  state.helpers = [];
}

function startHelpers(count) {
  stopHelpers();
  const ports = [];
  for (let i = 0; i < count; i += 1) {
    const helper = spawn();
    const channel = new MessageChannel();
    // A helper worker that stops is a bug or a browser limit.
    helper.onerror = (e) => handlers.helperStopped(e.message || 'it did not load');
    helper.postMessage(protocol.serve(channel.port1), [channel.port1]);
    state.helpers.push(helper);
    ports.push(channel.port2);
  }
  send(protocol.helpers(ports), ports);
}

/** (Re)start the engine worker, and with it its helpers. */
export function startWorker() {
  if (state.worker) state.worker.terminate();
  dropQuestions();
  stopHelpers();
  setPhase('loading');
  const worker = spawn();
  state.worker = worker;
  worker.onmessage = (e) => onMessage(e.data);
  worker.onerror = (e) => {
    setStatus(`The engine failed to load: ${e.message || 'unknown error'}. Press Retry, or reload the page.`, 'error');
    setPhase('failed');
    dropQuestions();
  };
  send(protocol.init(state.mode, state.limit, state.workers, workersAsked >= 1));
}

function onMessage(msg) {
  switch (msg.type) {
    case Msg.STATUS:
      setStatus(msg.text);
      break;
    case Msg.WANT_HELPERS:
      startHelpers(msg.count);
      break;
    case Msg.HELPERS_DROPPED:
      stopHelpers();
      state.workers = 1;
      showMessage(`Deraining on one CPU worker: ${msg.reason}.`, 'info');
      break;
    case Msg.ANSWER:
      answered(msg);
      break;
    case Msg.GPU_FAILED:
      state.mode = 'cpu';
      state.reason = msg.reason;
      startWorker();
      break;
    default: {
      const handle = handlers[msg.type];
      if (handle) handle(msg);
    }
  }
}

/** Start the engine; `table` maps the other message types (ready, weights-loaded, progress,
 * result, error) to the page's handlers, and `helperStopped(why)` handles a helper's crash. */
export function startEngine(table) {
  handlers = table;
  startWorker();
}
