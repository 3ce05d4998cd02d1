// The before/after viewer: the views of a result (input, derained, rain layer, stages), and
// the compare view's zoom, pan and divider. `state.zoom` is 'fit' (the whole photo inside the
// window, never enlarged), 1 (the photo's own pixels) or 2; when zoomed the viewport scrolls
// (drag, wheel, arrow keys, touch). The divider stands at a fraction of the visible width.
// Views are known by their key (the engine names them: `state.engine.views`), never by position.
// The derained view is shown at the amount in force (amount.js).

import { $, hook, state } from './state.js';
import { amountTable, blendRgba, downloadsAtAmount, initAmount } from './amount.js';
import { resultName, showMessage } from './ui.js';

function draw(canvas, rgba, width, height) {
  canvas.width = width;
  canvas.height = height;
  canvas.getContext('2d').putImageData(new ImageData(rgba, width, height), 0, 0);
}

const viewOf = (views, key) => views.find((v) => v.key === key);

// The view select: the views of the newest result, or only the derained photo for an earlier one.
function fillViews(views) {
  const names = state.engine.views;
  const select = $('view');
  select.textContent = '';
  for (const view of views) {
    if (view.key === names.input) continue; // the input is the "before" side
    const o = document.createElement('option');
    o.value = view.key;
    o.textContent = view.label;
    select.appendChild(o);
  }
  select.value = names.derained;
}

// The "after" side: the selected view, the derained photo at the amount in force. A newer
// draw (another view, amount or photo) wins over one still waiting for the engine's table.
let drawing = 0;
async function drawAfter() {
  if (!state.engine || !state.size) return;
  const names = state.engine.views;
  const view = viewOf(state.shownViews, $('view').value);
  if (!view) return;
  const turn = ++drawing;
  let rgba = view.rgba;
  let amount = view.key === names.derained ? 100 : null;
  if (view.key === names.derained) {
    let lookup = null;
    try {
      lookup = await amountTable();
    } catch (e) {
      showMessage(`Cannot show the amount: ${e.message}`);
    }
    if (turn !== drawing) return;
    if (lookup) {
      rgba = blendRgba(lookup, viewOf(state.shownViews, names.input).rgba, view.rgba);
      amount = state.amount;
    }
  }
  draw($('after'), rgba, state.size[0], state.size[1]);
  hook.viewAmount = amount; // what the "after" side shows, for the tests
}

function showItem(item, elapsed) {
  if (state.shownOrphan && state.shownOrphan !== item.url) URL.revokeObjectURL(state.shownOrphan);
  state.shownOrphan = null;
  state.shownItem = item;
  state.size = [item.width, item.height];
  state.zoom = 'fit';
  $('download').href = item.url;
  $('download').download = resultName(item, 100);
  $('elapsed').textContent = elapsed;
  $('result').hidden = false;
  layout();
}

/** Show the newest result, whose views the engine just sent. */
export function showNewest(item, views, note) {
  state.views = views;
  state.viewsId = item.id;
  state.shownViews = views;
  fillViews(views);
  draw($('before'), viewOf(views, state.engine.views.input).rgba, item.width, item.height);
  showItem(item, item.elapsed + note);
  drawAfter();
}

/** Show an earlier result again, decoding its PNG and the original photo (the browser's
 * decoder; a format it lacks, such as TIFF, shows the result on both sides). */
export async function viewItem(item) {
  if (item.id === state.viewsId) {
    showNewest(item, state.views, '');
    return;
  }
  try {
    const after = await createImageBitmap(item.png);
    const before = item.file ? await createImageBitmap(item.file).catch(() => after) : after;
    const pixels = [];
    for (const [canvas, bitmap] of [[$('before'), before], [$('after'), after]]) {
      canvas.width = item.width;
      canvas.height = item.height;
      const context = canvas.getContext('2d');
      context.drawImage(bitmap, 0, 0, item.width, item.height);
      pixels.push(context.getImageData(0, 0, item.width, item.height).data);
    }
    const names = state.engine.views;
    state.shownViews = [
      { key: names.input, rgba: pixels[0] },
      { key: names.derained, label: names.derainedLabel, rgba: pixels[1] },
    ];
    fillViews(state.shownViews);
    showItem(item, item.elapsed);
    drawAfter();
  } catch (e) {
    showMessage(`Cannot show "${item.name}": ${e.message}`);
  }
}

// The height the photo may take: the window less the toolbar and the hint, kept in view.
function availableHeight() {
  const chrome = $('result').querySelector('.toolbar').offsetHeight + 48;
  return Math.max(120, window.innerHeight - chrome);
}

function scale() {
  const [w, h] = state.size;
  if (state.zoom !== 'fit') return state.zoom;
  return Math.min(1, $('compare').parentElement.clientWidth / w, availableHeight() / h);
}

function layout() {
  if (!state.size) return;
  const [w, h] = state.size;
  const s = scale();
  const compare = $('compare');
  const stage = $('stage');
  stage.style.width = `${w * s}px`;
  stage.style.height = `${h * s}px`;
  const width = Math.min(compare.parentElement.clientWidth, w * s);
  const height = Math.min(h * s, availableHeight());
  compare.style.width = `${width}px`;
  compare.style.height = `${height}px`;
  compare.dataset.zoom = String(state.zoom);
  for (const b of document.querySelectorAll('[data-zoom]')) {
    if (b.tagName === 'BUTTON') b.setAttribute('aria-pressed', String(b.dataset.zoom === String(state.zoom)));
  }
  hook.zoom = state.zoom;
  setSlider(Number($('slider').value));
}

function setSlider(percent) {
  const viewport = $('viewport');
  const stageWidth = $('stage').offsetWidth;
  const x = viewport.scrollLeft + (percent / 100) * viewport.clientWidth;
  $('before').style.clipPath = `inset(0 ${Math.max(0, stageWidth - x)}px 0 0)`;
  $('divider').style.left = `${percent}%`;
}

function setZoom(zoom) {
  if (!state.size) return;
  const viewport = $('viewport');
  // Keep the centre of the view where it was.
  const old = scale();
  const cx = (viewport.scrollLeft + viewport.clientWidth / 2) / old;
  const cy = (viewport.scrollTop + viewport.clientHeight / 2) / old;
  state.zoom = zoom;
  layout();
  const now = scale();
  viewport.scrollLeft = cx * now - viewport.clientWidth / 2;
  viewport.scrollTop = cy * now - viewport.clientHeight / 2;
  setSlider(Number($('slider').value));
}

/** Wire the viewer's controls: zoom buttons, panning, the divider, the view select. */
export function initViewer() {
  const viewport = $('viewport');
  for (const b of document.querySelectorAll('button[data-zoom]')) {
    b.addEventListener('click', () => setZoom(b.dataset.zoom === 'fit' ? 'fit' : Number(b.dataset.zoom)));
  }
  window.addEventListener('resize', () => layout());
  viewport.addEventListener('scroll', () => setSlider(Number($('slider').value)));
  viewport.addEventListener('keydown', (e) => {
    const step = { ArrowLeft: [-40, 0], ArrowRight: [40, 0], ArrowUp: [0, -40], ArrowDown: [0, 40] }[e.key];
    if (!step || state.zoom === 'fit') return;
    e.preventDefault();
    viewport.scrollBy(step[0], step[1]);
  });
  // Drag to pan when zoomed (mouse, pen and touch alike).
  let pan = null;
  viewport.addEventListener('pointerdown', (e) => {
    if (state.zoom === 'fit') return;
    pan = { x: e.clientX, y: e.clientY, left: viewport.scrollLeft, top: viewport.scrollTop };
    viewport.setPointerCapture(e.pointerId);
  });
  viewport.addEventListener('pointermove', (e) => {
    if (!pan) return;
    viewport.scrollLeft = pan.left - (e.clientX - pan.x);
    viewport.scrollTop = pan.top - (e.clientY - pan.y);
  });
  ['pointerup', 'pointercancel'].forEach((t) => viewport.addEventListener(t, () => { pan = null; }));
  // The divider's grip (shown when zoomed) moves the divider.
  let grip = false;
  const grabber = $('divider').querySelector('.grip');
  grabber.addEventListener('pointerdown', (e) => { grip = true; grabber.setPointerCapture(e.pointerId); e.stopPropagation(); });
  grabber.addEventListener('pointermove', (e) => {
    if (!grip) return;
    const r = $('compare').getBoundingClientRect();
    const percent = Math.min(100, Math.max(0, ((e.clientX - r.left) / r.width) * 100));
    $('slider').value = String(percent);
    setSlider(percent);
  });
  ['pointerup', 'pointercancel'].forEach((t) => grabber.addEventListener(t, () => { grip = false; }));
  $('view').addEventListener('change', drawAfter);
  initAmount(drawAfter);
  downloadsAtAmount($('download'), () => state.shownItem);
  $('slider').addEventListener('input', (e) => setSlider(Number(e.target.value)));
}
