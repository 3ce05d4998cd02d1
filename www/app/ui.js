// The page's words: the status line, the message box, times, and the engine's description.

import { $, state } from './state.js';

export function setStatus(text, kind) {
  $('status').textContent = text;
  $('status').dataset.state = kind || 'ok';
}

export function showMessage(text, kind) {
  const m = $('message');
  m.textContent = text;
  m.className = `message ${kind || ''}`;
  m.hidden = !text;
}

export function fmtSeconds(s) {
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 90) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

/** The status line of a running engine: backend, CPU speed estimate, weights. */
export function engineText(engine, weights) {
  const what = engine.backend === 'webgpu'
    ? `Using WebGPU on ${engine.adapter}`
    : `Using the CPU${engine.reason ? ` (${engine.reason})` : ''}${engine.workers > 1 ? ` on ${engine.workers} workers` : ''}`;
  // The estimate is at the weights' T; a photo runs at the T chosen on the page.
  const chosen = Number($('stages').value) || (weights && weights.stages);
  const at = weights && chosen !== weights.stages ? ` at T = ${chosen}` : '';
  const speed = engine.backend === 'cpu' && state.cpuSecondsPerMp
    ? `, expect about ${fmtSeconds(state.cpuSecondsPerMp * (weights ? chosen / weights.stages : 1))} per megapixel${at}`
    : '';
  const w = weights ? ` · weights: ${weights.label}, ${weights.architecture}` : '';
  return `${what}${speed}${w}.`;
}

/** The download name of a photo's result at `percent` amount (said when below 100). */
export const resultName = (item, percent) => `${item.name.replace(/\.[^.]*$/, '') || 'photo'}-derained`
  + `${percent < 100 ? `-amount${percent}` : ''}.png`;

/** Save `blob` as a download named `name`. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
