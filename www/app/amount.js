// The amount of deraining (0–100 %, default 100): the derained photo blended with its input in
// linear light, for the view and for every download, for photos where the weights do too much.
// The blend is the engine's (model::amount, asked of the engine worker): the view looks its
// pixels up in the engine's 8-bit table, and a download below 100 % is the engine's blend of the
// photo file and the result's PNG, in the photo's bit depth, named with its amount. The value
// is kept across photos and reloads (localStorage).

import { ask } from './bridge.js';
import * as protocol from './protocol.js';
import { $, hook, state } from './state.js';
import { resultName, saveBlob, showMessage } from './ui.js';

const KEY = 'brn-amount';

/** The amount kept from an earlier visit, in whole percent (100 without one). */
export function storedAmount() {
  try {
    const kept = localStorage.getItem(KEY);
    const percent = Math.round(Number(kept));
    return kept !== null && percent >= 0 && percent <= 100 ? percent : 100;
  } catch (_) {
    return 100; // storage blocked (e.g. a sandboxed frame): 100 % each visit
  }
}

function keep(percent) {
  try { localStorage.setItem(KEY, String(percent)); } catch (_) { /* not kept: see storedAmount */ }
}

// The engine's tables by percent (64 KiB each; a drag asks for a few).
const tables = new Map();

function table(percent) {
  if (!tables.has(percent)) {
    const asked = ask(protocol.amountTable(percent / 100));
    asked.catch(() => tables.delete(percent));
    tables.set(percent, asked);
  }
  return tables.get(percent);
}

/** The engine's table at the amount in force (null at 100 %, where nothing is blended). */
export const amountTable = () => (state.amount >= 100 ? Promise.resolve(null) : table(state.amount));

/** `derained` (RGBA) blended with `input` (RGBA, same size) by `lookup` (an amount's table):
 * a new array; alpha is the derained view's. */
export function blendRgba(lookup, input, derained) {
  const out = new Uint8ClampedArray(derained.length);
  for (let i = 0; i < out.length; i += 4) {
    out[i] = lookup[input[i] * 256 + derained[i]];
    out[i + 1] = lookup[input[i + 1] * 256 + derained[i + 1]];
    out[i + 2] = lookup[input[i + 2] * 256 + derained[i + 2]];
    out[i + 3] = derained[i + 3];
  }
  return out;
}

/** A done photo's download at the current amount: {blob, name}. */
export async function resultFile(item) {
  const percent = state.amount;
  if (percent >= 100) return { blob: item.png, name: resultName(item, 100) };
  if (!item.file) throw new Error(`the photo "${item.name}" is no longer kept, so its result cannot be blended`);
  const [photo, png] = await Promise.all([item.file.arrayBuffer(), item.png.arrayBuffer()]);
  const bytes = await ask(protocol.blend(photo, png, percent / 100), [photo, png]);
  return { blob: new Blob([bytes], { type: 'image/png' }), name: resultName(item, percent) };
}

/** Make `link` (an <a download> of a result's PNG; `itemOf()` gives its photo when clicked)
 * download at the amount in force: below 100 % the click asks the engine for the blend and
 * saves that instead. */
export function downloadsAtAmount(link, itemOf) {
  link.addEventListener('click', (e) => {
    const item = itemOf();
    if (state.amount >= 100 || !item) return;
    e.preventDefault();
    resultFile(item).then(({ blob, name }) => saveBlob(blob, name),
      (err) => showMessage(`Could not make the download at ${state.amount} %: ${err.message}`));
  });
}

function show(percent) {
  $('amount').value = String(percent);
  $('amount-value').textContent = `${percent} %`;
  $('download').textContent = percent < 100 ? `Download PNG (${percent} %)` : 'Download PNG';
  hook.amount = percent;
}

/** Wire the amount control: `changed()` redraws what depends on it (the view, the names). */
export function initAmount(changed) {
  state.amount = storedAmount();
  show(state.amount);
  $('amount').addEventListener('input', (e) => {
    state.amount = Math.round(Number(e.target.value));
    show(state.amount);
    changed();
  });
  $('amount').addEventListener('change', () => keep(state.amount));
}
