// The page: file intake (drop, paste, picker), progress, the before/after viewer and download.
// All computation happens in worker.js. URL options: ?backend=cpu forces the CPU path;
// ?limit=BYTES caps the GPU limits used to size tiles (tests force many tiles with it).
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const state = {
    worker: null, mode: params.get('backend') === 'cpu' ? 'cpu' : 'auto',
    limit: Number(params.get('limit')) || 0, reason: '',
    nextId: 1, currentId: 0, views: [], inputName: 'photo', pngUrl: null, cpuSecondsPerMp: null,
  };
  // What tests read: the phase (mirrored as `state`), the last result and the engine in use.
  window.brnPage = { state: 'loading', backend: null, lastPng: null, lastError: null, results: 0 };

  // The page's one phase, which drives both the controls and the test hook:
  // loading (engine starting) → ready | no-weights | failed; ready → working (a derain) or
  // weights (loading weights) → ready.
  let phase = 'loading';
  const busy = () => phase === 'working' || phase === 'weights';

  function setPhase(next) {
    phase = next;
    window.brnPage.state = next;
    $('progress').hidden = !busy();
    $('drop').setAttribute('aria-disabled', String(phase !== 'ready'));
    $('weights-file').disabled = busy() || phase === 'loading';
  }

  function setStatus(text, kind) {
    $('status').textContent = text;
    $('status').dataset.state = kind || 'ok';
  }

  function showMessage(text, kind) {
    const m = $('message');
    m.textContent = text;
    m.className = `message ${kind || ''}`;
    m.hidden = !text;
  }

  function fmtSeconds(s) {
    if (s < 1) return `${Math.round(s * 1000)} ms`;
    if (s < 90) return `${s.toFixed(1)} s`;
    return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  }

  function engineText(engine, weights) {
    const what = engine.backend === 'webgpu'
      ? `Using WebGPU on ${engine.adapter}`
      : `Using the CPU${engine.reason ? ` (${engine.reason})` : ''}`;
    const speed = engine.backend === 'cpu' && state.cpuSecondsPerMp
      ? `, expect about ${fmtSeconds(state.cpuSecondsPerMp)} per megapixel` : '';
    const w = weights ? ` · weights: ${weights.label}, ${weights.architecture}` : '';
    return `${what}${speed}${w}.`;
  }

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

  function showWeights(weights) {
    state.weights = weights;
    $('weights-name').textContent = weights ? `${weights.label} (${weights.architecture})` : 'none';
    $('weights-default').hidden = !weights || !weights.source.startsWith('yours');
    if (weights) fillStages(weights.stages, weights.stages);
  }

  function startWorker() {
    if (state.worker) state.worker.terminate();
    setPhase('loading');
    const worker = new Worker('./worker.js');
    state.worker = worker;
    worker.onmessage = (e) => onWorkerMessage(e.data);
    worker.onerror = (e) => {
      setStatus(`The engine failed to load: ${e.message || 'unknown error'}. Reload the page to retry.`, 'error');
      setPhase('failed');
    };
    worker.postMessage({ type: 'init', mode: state.mode, limitOverride: state.limit });
  }

  function onWorkerMessage(msg) {
    switch (msg.type) {
      case 'status':
        setStatus(msg.text);
        break;
      case 'gpu-failed':
        state.mode = 'cpu';
        state.reason = msg.reason;
        startWorker();
        break;
      case 'ready': {
        const engine = msg.engine;
        if (state.reason) engine.reason = state.reason;
        if (engine.backend === 'cpu' && msg.warmUp && msg.weights) {
          // Scale the warm-up's time (a small image, few stages) to a megapixel at the weights' T.
          const w = msg.warmUp;
          state.cpuSecondsPerMp = (w.seconds / (w.pixels / 1e6)) * (msg.weights.stages / w.stages);
        }
        state.engine = engine;
        showWeights(msg.weights);
        window.brnPage.backend = engine.backend;
        setPhase(msg.weights ? 'ready' : 'no-weights');
        setStatus(engineText(engine, msg.weights));
        if (!msg.weights) {
          showMessage('This build has no default weights: load a weights file (.safetensors or an authors\' .pth) above.', 'info');
        }
        break;
      }
      case 'weights':
        showWeights(msg.weights);
        setPhase('ready');
        setStatus(engineText(state.engine, msg.weights));
        showMessage(`Loaded ${msg.weights.label}.`, 'info');
        break;
      case 'progress': {
        if (msg.id !== state.currentId) break;
        $('bar').max = msg.total;
        $('bar').value = msg.done;
        const eta = msg.done > 0 ? (msg.seconds / msg.done) * (msg.total - msg.done) : 0;
        $('progress-text').textContent = `tile ${msg.done} of ${msg.total} · ${fmtSeconds(msg.seconds)}`
          + (msg.done < msg.total ? ` · about ${fmtSeconds(eta)} left` : '');
        break;
      }
      case 'result':
        if (msg.id !== state.currentId) break;
        showResult(msg);
        break;
      case 'error':
        // A failed derain or weights load leaves the engine as it was.
        if (busy()) setPhase(state.weights ? 'ready' : 'no-weights');
        window.brnPage.lastError = msg.message;
        if (msg.message === 'cancelled') {
          showMessage('Cancelled.', 'info');
        } else if (msg.during === 'derain') {
          showMessage(`Could not derain this file: ${msg.message}`);
        } else if (msg.during === 'weights') {
          showMessage(`Could not use these weights: ${msg.message}. The previous weights are still in use.`);
        } else {
          setStatus(`The engine failed to start: ${msg.message}`, 'error');
          setPhase('failed');
        }
        if (msg.fatal) {
          showMessage(`${$('message').textContent} The engine was restarted.`);
          startWorker();
        }
        break;
      default:
        break;
    }
  }

  function derainFile(file) {
    if (phase === 'loading') {
      showMessage('The engine is still starting; try again in a moment.', 'info');
      return;
    }
    if (busy()) {
      showMessage('A photo is being processed; cancel it first or wait.', 'info');
      return;
    }
    if (phase === 'no-weights') {
      showMessage('Load a weights file first.');
      return;
    }
    if (phase === 'failed') {
      showMessage('The engine did not start; reload the page to retry.');
      return;
    }
    if (file.type && !file.type.startsWith('image/') && file.type !== 'application/octet-stream') {
      showMessage(`"${file.name}" is not an image (${file.type}).`);
      return;
    }
    showMessage('');
    state.inputName = (file.name || 'photo').replace(/\.[^.]*$/, '') || 'photo';
    file.arrayBuffer().then((buffer) => {
      state.currentId = state.nextId++;
      $('bar').value = 0;
      $('progress-text').textContent = 'starting…';
      setPhase('working');
      state.worker.postMessage({
        type: 'derain', id: state.currentId, file: buffer,
        stages: Number($('stages').value), keepStages: $('keep-stages').checked,
      }, [buffer]);
    }, (e) => showMessage(`Could not read the file: ${e.message}`));
  }

  function draw(canvas, view, width, height) {
    canvas.width = width;
    canvas.height = height;
    canvas.getContext('2d').putImageData(new ImageData(view.rgba, width, height), 0, 0);
  }

  function showResult(msg) {
    state.views = msg.views;
    const select = $('view');
    select.textContent = '';
    msg.views.forEach((v, i) => {
      if (i === 0) return; // the input is the "before" side
      const o = document.createElement('option');
      o.value = String(i);
      o.textContent = v.label;
      select.appendChild(o);
    });
    select.value = '1';
    draw($('before'), msg.views[0], msg.width, msg.height);
    draw($('after'), msg.views[1], msg.width, msg.height);
    state.size = [msg.width, msg.height];
    state.zoom = 'fit';
    if (state.pngUrl) URL.revokeObjectURL(state.pngUrl);
    const blob = new Blob([msg.png], { type: 'image/png' });
    state.pngUrl = URL.createObjectURL(blob);
    $('download').href = state.pngUrl;
    $('download').download = `${state.inputName}-derained.png`;
    const mp = (msg.width * msg.height) / 1e6;
    $('elapsed').textContent = `${msg.width}×${msg.height} in ${fmtSeconds(msg.seconds)} `
      + `(${fmtSeconds(msg.seconds / mp)} per megapixel, ${msg.backend === 'webgpu' ? 'WebGPU' : 'CPU'})`
      + (!msg.stagesKept && $('keep-stages').checked ? ' · stage views are kept for photos up to 4 MP' : '');
    $('result').hidden = false;
    layout();
    if (msg.backend === 'cpu' && state.engine) {
      // A real photo's speed replaces the warm-up's rough estimate.
      state.cpuSecondsPerMp = (msg.seconds / mp) * (state.weights ? state.weights.stages / Number($('stages').value) : 1);
      setStatus(engineText(state.engine, state.weights));
    }
    window.brnPage.lastPng = msg.png;
    window.brnPage.lastSeconds = msg.seconds;
    window.brnPage.results += 1;
    setPhase('ready');
  }

  // The compare view. `state.zoom` is 'fit' (the whole photo inside the window, never
  // enlarged), 1 (the photo's own pixels) or 2; when zoomed the viewport scrolls (drag, wheel,
  // arrow keys, touch). The divider stands at a fraction of the visible width.
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
    window.brnPage.zoom = state.zoom;
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

  for (const b of document.querySelectorAll('button[data-zoom]')) {
    b.addEventListener('click', () => setZoom(b.dataset.zoom === 'fit' ? 'fit' : Number(b.dataset.zoom)));
  }
  window.addEventListener('resize', () => layout());
  $('viewport').addEventListener('scroll', () => setSlider(Number($('slider').value)));
  $('viewport').addEventListener('keydown', (e) => {
    const step = { ArrowLeft: [-40, 0], ArrowRight: [40, 0], ArrowUp: [0, -40], ArrowDown: [0, 40] }[e.key];
    if (!step || state.zoom === 'fit') return;
    e.preventDefault();
    $('viewport').scrollBy(step[0], step[1]);
  });
  // Drag to pan when zoomed (mouse, pen and touch alike).
  let pan = null;
  $('viewport').addEventListener('pointerdown', (e) => {
    if (state.zoom === 'fit') return;
    pan = { x: e.clientX, y: e.clientY, left: $('viewport').scrollLeft, top: $('viewport').scrollTop };
    $('viewport').setPointerCapture(e.pointerId);
  });
  $('viewport').addEventListener('pointermove', (e) => {
    if (!pan) return;
    $('viewport').scrollLeft = pan.left - (e.clientX - pan.x);
    $('viewport').scrollTop = pan.top - (e.clientY - pan.y);
  });
  ['pointerup', 'pointercancel'].forEach((t) => $('viewport').addEventListener(t, () => { pan = null; }));
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

  // Intake: picker, drag and drop, paste.
  $('file').addEventListener('change', (e) => {
    if (e.target.files[0]) derainFile(e.target.files[0]);
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
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (!file) return;
    if (/\.(pth|safetensors)$/i.test(file.name)) loadWeightsFile(file);
    else derainFile(file);
  });
  document.addEventListener('paste', (e) => {
    const item = [...(e.clipboardData ? e.clipboardData.items : [])].find((i) => i.kind === 'file');
    if (item) derainFile(item.getAsFile());
  });

  function loadWeightsFile(file) {
    if (busy() || phase === 'loading' || phase === 'failed') {
      showMessage('Wait for the current work to finish before changing weights.', 'info');
      return;
    }
    file.arrayBuffer().then((bytes) => {
      setPhase('weights');
      $('progress-text').textContent = `loading ${file.name}…`;
      state.worker.postMessage({ type: 'weights', bytes, name: file.name }, [bytes]);
    });
  }
  $('weights-file').addEventListener('change', (e) => {
    if (e.target.files[0]) loadWeightsFile(e.target.files[0]);
    e.target.value = '';
  });
  $('weights-default').addEventListener('click', () => {
    if (busy()) return;
    setPhase('weights');
    state.worker.postMessage({ type: 'weights', reset: true });
  });

  $('cancel').addEventListener('click', () => {
    state.worker.postMessage({ type: 'cancel' });
    $('progress-text').textContent = 'cancelling after this tile…';
  });
  $('view').addEventListener('change', () => {
    const view = state.views[Number($('view').value)];
    if (view) draw($('after'), view, state.size[0], state.size[1]);
  });
  $('slider').addEventListener('input', (e) => setSlider(Number(e.target.value)));

  startWorker();
})();
