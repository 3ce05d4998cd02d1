// The queue of photos: each waits until the engine is free, and its state shows in the list;
// finished ones can be viewed again, downloaded one by one or all as a zip, and cleared.

import { send } from './bridge.js';
import * as protocol from './protocol.js';
import { $, currentPhase, hook, setPhase, state } from './state.js';
import { downloadsAtAmount, resultFile } from './amount.js';
import { resultName, saveBlob, showMessage } from './ui.js';
import { viewItem } from './viewer.js';
import { makeZip } from './zip.js';

/** The photo being derained, if any. */
export const current = () => state.queue.find((i) => i.id === state.currentId && i.status === 'working');

export function addPhotos(files) {
  const phase = currentPhase();
  if (phase === 'no-weights') {
    showMessage('Load a weights file first.');
    return;
  }
  if (phase === 'failed') {
    showMessage('The engine did not start; reload the page to retry.');
    return;
  }
  showMessage('');
  for (const file of files) {
    const item = {
      id: state.nextId++, name: file.name || `pasted-${state.nextId}.png`, file,
      status: 'waiting', message: '', png: null, url: null,
    };
    state.queue.push(item);
    if (file.type && !file.type.startsWith('image/') && file.type !== 'application/octet-stream') {
      item.status = 'failed';
      item.message = `not an image (${file.type})`;
      item.file = null;
    }
  }
  renderQueue();
  if (phase === 'loading') {
    showMessage('The engine is still starting; the photos will be processed when it is ready.', 'info');
  }
  pump();
}

/** Start the next waiting photo when the engine is free. */
export function pump() {
  if (currentPhase() !== 'ready') return;
  const item = state.queue.find((i) => i.status === 'waiting');
  if (!item) return;
  const file = item.file;
  state.currentId = item.id;
  setItem(item, 'working', 'reading…');
  $('bar').value = 0;
  $('progress-text').textContent = `${item.name}: starting…`;
  setPhase('working');
  file.arrayBuffer().then((buffer) => {
    if (item.status !== 'working') return; // cancelled while reading
    setItem(item, 'working', 'starting…');
    const stages = Number($('stages').value);
    send(protocol.derain(item.id, buffer, stages, $('keep-stages').checked), [buffer]);
  }, (e) => {
    setItem(item, 'failed', `cannot read the file (${e.message})`);
    setPhase('ready');
    pump();
  });
}

export function setItem(item, status, message) {
  item.status = status;
  item.message = message || '';
  // A done photo keeps its original for the "before" side; a failed or cancelled one drops it.
  if (status === 'failed' || status === 'cancelled') item.file = null;
  renderQueue();
}

export function renderQueue() {
  const list = $('queue-list');
  list.textContent = '';
  for (const item of state.queue) {
    const li = document.createElement('li');
    li.dataset.status = item.status;
    li.dataset.id = String(item.id);
    if (item === state.shownItem) li.setAttribute('aria-current', 'true');
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = item.name;
    const text = document.createElement('span');
    text.className = 'state';
    text.textContent = item.status + (item.message ? `: ${item.message}` : '');
    li.append(name, text);
    if (item.status === 'done') {
      const view = document.createElement('button');
      view.type = 'button';
      view.className = 'small view';
      view.textContent = 'View';
      view.addEventListener('click', () => viewItem(item).then(renderQueue));
      const link = document.createElement('a');
      link.className = 'button small download';
      link.href = item.url;
      link.download = resultName(item, 100);
      downloadsAtAmount(link, () => item);
      link.textContent = 'PNG';
      li.append(view, link);
    }
    list.appendChild(li);
  }
  const count = (s) => state.queue.filter((i) => i.status === s).length;
  const done = count('done');
  const toGo = count('working') + count('waiting');
  $('queue').hidden = state.queue.length < 2 && !state.queue.some((i) => i.status === 'failed');
  $('queue-summary').textContent = `${state.queue.length} photo(s): ${done} done`
    + `${toGo ? `, ${toGo} to go` : ''}`
    + `${count('failed') ? `, ${count('failed')} failed` : ''}${count('cancelled') ? `, ${count('cancelled')} cancelled` : ''}`;
  $('download-all').disabled = done === 0;
  $('cancel-all').disabled = !toGo;
  hook.queue = state.queue.map((i) => ({ name: i.name, status: i.status, message: i.message }));
}

/** Ask the engine to stop the photo in progress after its current tile. */
export function cancelCurrent() {
  send(protocol.cancel());
  $('progress-text').textContent = 'cancelling after this tile…';
}

// Every done photo's result at the amount in force, one after another (each blend holds a
// photo and its result in the engine's memory).
async function downloadAll() {
  const done = state.queue.filter((i) => i.status === 'done');
  if (!done.length) return;
  const entries = [];
  try {
    for (const item of done) {
      const { blob, name } = await resultFile(item);
      entries.push({ name, bytes: new Uint8Array(await blob.arrayBuffer()) });
    }
  } catch (e) {
    showMessage(`Could not make the zip: ${e.message}`);
    return;
  }
  saveBlob(makeZip(entries), 'derained.zip');
}

// Finished photos leave the list; the one on show stays viewable and downloadable until
// another is shown (its PNG is released then).
function clearFinished() {
  state.queue = state.queue.filter((item) => {
    const keep = item.status === 'waiting' || item.status === 'working';
    if (!keep && item.url && item !== state.shownItem) URL.revokeObjectURL(item.url);
    if (!keep && item === state.shownItem) state.shownOrphan = item.url;
    return keep;
  });
  renderQueue();
}

/** Wire the queue's buttons. */
export function initQueue() {
  $('cancel').addEventListener('click', cancelCurrent);
  $('cancel-all').addEventListener('click', () => {
    for (const item of state.queue) {
      if (item.status === 'waiting') setItem(item, 'cancelled');
    }
    if (current()) cancelCurrent();
  });
  $('download-all').addEventListener('click', downloadAll);
  $('clear-finished').addEventListener('click', clearFinished);
}
