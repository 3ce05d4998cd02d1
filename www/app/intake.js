// Photos in: the file picker, drag and drop (a weights file dropped goes to the weights), paste.

import { addPhotos } from './queue.js';
import { $ } from './state.js';
import { loadWeightsFile } from './weights.js';

const isWeights = (file) => /\.(pth|safetensors)$/i.test(file.name);

/** Wire the picker, the drop zone and paste. */
export function initIntake() {
  $('file').addEventListener('change', (e) => {
    if (e.target.files.length) addPhotos([...e.target.files]);
    e.target.value = '';
  });
  const drop = $('drop');
  drop.addEventListener('click', (e) => { if (e.target === drop) $('file').click(); });
  drop.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') $('file').click(); });
  ['dragenter', 'dragover'].forEach((t) => document.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.add('over');
  }));
  ['dragleave', 'drop'].forEach((t) => document.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.remove('over');
  }));
  document.addEventListener('drop', (e) => {
    const files = [...(e.dataTransfer ? e.dataTransfer.files : [])];
    const weights = files.filter(isWeights);
    if (weights.length) loadWeightsFile(weights[0]);
    const photos = files.filter((f) => !isWeights(f));
    if (photos.length) addPhotos(photos);
  });
  document.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData ? e.clipboardData.items : [])]
      .filter((i) => i.kind === 'file').map((i) => i.getAsFile()).filter(Boolean);
    if (files.length) addPhotos(files);
  });
}
