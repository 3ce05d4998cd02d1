// The page: photos in (intake.js) to a queue (queue.js), each derained by the engine worker
// (bridge.js, worker.js), shown in the before/after viewer (viewer.js) and downloaded; the
// weights in use (weights.js); offline use (offline.js). This module answers the engine's
// messages and starts it all. The messages themselves are defined in protocol.js.

import { startEngine, startWorker } from './bridge.js';
import { initIntake } from './intake.js';
import { initOffline } from './offline.js';
import { Msg } from './protocol.js';
import { current, initQueue, pump, renderQueue, setItem } from './queue.js';
import { $, busy, hook, setPhase, state } from './state.js';
import { engineText, fmtSeconds, setStatus, showMessage } from './ui.js';
import { initViewer, showNewest } from './viewer.js';
import { initWeights, showWeights } from './weights.js';

function ready(msg) {
  const engine = msg.engine;
  if (state.reason) engine.reason = state.reason;
  // The engine's estimate from its warm-up (a small image, few stages).
  if (msg.estimate) state.cpuSecondsPerMp = msg.estimate;
  state.engine = engine;
  showWeights(msg.weights);
  hook.backend = engine.backend;
  hook.adapter = engine.adapter;
  hook.workers = engine.workers;
  // What runs it, on hover: the GPU's name, or the CPU path's wasm build and kernel.
  $('status').title = engine.adapter;
  setPhase(msg.weights ? 'ready' : 'no-weights');
  setStatus(engineText(engine, msg.weights));
  hook.notice = msg.notice;
  if (!msg.weights) {
    showMessage('This build has no default weights: load a weights file (.safetensors or an authors\' .pth) above.', 'info');
  } else if (msg.notice) {
    showMessage(msg.notice, 'info');
  }
  pump();
}

function weightsLoaded(msg) {
  showWeights(msg.weights);
  setPhase('ready');
  setStatus(engineText(state.engine, msg.weights));
  showMessage(`Loaded ${msg.weights.label}.`, 'info');
  pump();
}

function progress(msg) {
  if (msg.id !== state.currentId) return;
  $('bar').max = msg.total;
  $('bar').value = msg.done;
  const eta = msg.done > 0 ? (msg.seconds / msg.done) * (msg.total - msg.done) : 0;
  const item = current();
  $('progress-text').textContent = `${item ? `${item.name}: ` : ''}tile ${msg.done} of ${msg.total} · ${fmtSeconds(msg.seconds)}`
    + (msg.done < msg.total ? ` · about ${fmtSeconds(eta)} left` : '');
  if (item) setItem(item, 'working', `tile ${msg.done} of ${msg.total}`);
}

function result(msg) {
  if (msg.id !== state.currentId) return;
  const item = state.queue.find((i) => i.id === msg.id);
  item.png = new Blob([msg.png], { type: 'image/png' });
  item.url = URL.createObjectURL(item.png);
  item.width = msg.width;
  item.height = msg.height;
  const mp = (msg.width * msg.height) / 1e6;
  item.elapsed = `${msg.width}×${msg.height} in ${fmtSeconds(msg.seconds)} `
    + `(${fmtSeconds(msg.seconds / mp)} per megapixel, ${msg.backend === 'webgpu' ? 'WebGPU' : 'CPU'})`;
  state.currentId = 0;
  const note = !msg.stagesKept && $('keep-stages').checked
    ? ` · stage views are kept for photos up to ${state.engine.stageViewPixels / 1e6} MP` : '';
  showNewest(item, msg.views, note);
  setItem(item, 'done', `${fmtSeconds(msg.seconds)}`);
  if (msg.estimate && state.engine) {
    // A real photo's speed replaces the warm-up's rough estimate.
    state.cpuSecondsPerMp = msg.estimate;
    setStatus(engineText(state.engine, state.weights));
  }
  hook.lastPng = msg.png;
  hook.lastSeconds = msg.seconds;
  hook.memory = msg.memory;
  hook.tilesByHelper = msg.tilesByHelper;
  hook.lastTile = msg.tile;
  hook.results += 1;
  setPhase('ready');
  pump();
}

function failed(msg) {
  // A failed derain or weights load leaves the engine as it was.
  if (busy()) setPhase(state.weights ? 'ready' : 'no-weights');
  hook.lastError = msg.message;
  hook.lastErrorKind = msg.kind;
  const item = msg.during === Msg.DERAIN ? state.queue.find((i) => i.id === msg.id) : null;
  const cancelled = msg.kind === 'cancelled';
  if (item) {
    setItem(item, cancelled ? 'cancelled' : 'failed', cancelled ? '' : msg.message);
    state.currentId = 0;
  }
  if (cancelled) {
    showMessage(`Cancelled ${item ? `"${item.name}"` : ''}.`, 'info');
  } else if (msg.during === Msg.DERAIN) {
    showMessage(`Could not derain "${item ? item.name : 'this file'}": ${msg.message}`);
  } else if (msg.during === Msg.WEIGHTS) {
    showMessage(`Could not use these weights: ${msg.message}. The previous weights are still in use.`);
  } else {
    setStatus(`The engine failed to start: ${msg.message}`, 'error');
    setPhase('failed');
  }
  if (msg.fatal) {
    // A CPU worker that crashed may have run out of memory: start again on one.
    if (msg.helper) state.workers = 1;
    showMessage(`${$('message').textContent} The engine was restarted.`);
    startWorker();
  } else {
    pump();
  }
}

// A helper worker that stops is a bug or a browser limit: start again on one worker.
function helperStopped(why) {
  const item = current();
  if (item) setItem(item, 'failed', `a CPU worker stopped (${why})`);
  state.currentId = 0;
  state.workers = 1;
  showMessage(`A CPU worker stopped (${why}); the engine was restarted on one worker.`);
  startWorker();
}

// A failed start (e.g. the default weights arrived damaged) can be tried again.
$('retry').addEventListener('click', () => {
  showMessage('');
  startWorker();
});

initViewer();
initQueue();
initWeights();
initIntake();
initOffline();
renderQueue();
startEngine({
  [Msg.READY]: ready,
  [Msg.WEIGHTS_LOADED]: weightsLoaded,
  [Msg.PROGRESS]: progress,
  [Msg.RESULT]: result,
  [Msg.ERROR]: failed,
  helperStopped,
});
