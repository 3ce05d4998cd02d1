// The weights in use: their name and stages on the page, a person's own file (picker or drop),
// and the way back to the default.

import { send } from './bridge.js';
import * as protocol from './protocol.js';
import { $, busy, currentPhase, setPhase, state } from './state.js';
import { engineText, setStatus, showMessage } from './ui.js';

function fillStages(max, chosen) {
  const select = $('stages');
  select.textContent = '';
  for (let t = 1; t <= Math.max(max, 8); t += 1) {
    const o = document.createElement('option');
    o.value = String(t);
    o.textContent = String(t);
    select.appendChild(o);
  }
  select.value = String(chosen);
}

/** Show `weights` ({label, architecture, stages, source}, or null) as the ones in use. */
export function showWeights(weights) {
  state.weights = weights;
  $('weights-name').textContent = weights ? `${weights.label} (${weights.architecture})` : 'none';
  $('weights-default').hidden = !weights || !weights.source.startsWith('yours');
  if (weights) fillStages(weights.stages, weights.stages);
}

/** Hand a person's weights file to the engine (it checks them and keeps the old on failure). */
export function loadWeightsFile(file) {
  const phase = currentPhase();
  if (busy() || phase === 'loading' || phase === 'failed') {
    showMessage('Wait for the current work to finish before changing weights.', 'info');
    return;
  }
  file.arrayBuffer().then((bytes) => {
    setPhase('weights');
    $('progress-text').textContent = `loading ${file.name}…`;
    send(protocol.weights(bytes, file.name), [bytes]);
  });
}

/** Wire the weights controls. */
export function initWeights() {
  $('weights-file').addEventListener('change', (e) => {
    if (e.target.files[0]) loadWeightsFile(e.target.files[0]);
    e.target.value = '';
  });
  // The status line's time per megapixel follows the T chosen.
  $('stages').addEventListener('change', () => {
    const phase = currentPhase();
    if (state.engine && state.weights && (phase === 'ready' || phase === 'working')) {
      setStatus(engineText(state.engine, state.weights));
    }
  });
  $('weights-default').addEventListener('click', () => {
    if (busy()) return;
    setPhase('weights');
    send(protocol.defaultWeights());
  });
}
