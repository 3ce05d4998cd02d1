// The page: file intake (drop, paste, picker) into a queue of photos, progress, the before/after
// viewer and downloads (one photo, or all as a zip: zip.js).
// All computation happens in worker.js. URL options: ?backend=cpu forces the CPU path;
// ?limit=BYTES caps the GPU limits used to size tiles (tests force many tiles with it);
// ?workers=N sets how many Web Workers share the CPU path's tiles.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const MAX_WORKERS = 16;
  // CPU workers: one a core but one (the page and the engine worker's decoding and blending
  // need a little), or as many as ?workers= asks; the engine worker lowers the count to what
  // the device's memory holds.
  const workersAsked = Math.floor(Number(params.get('workers'))); // NaN without ?workers=
  function cpuWorkers() {
    if (workersAsked >= 1) return Math.min(workersAsked, MAX_WORKERS);
    return Math.max(1, Math.min((navigator.hardwareConcurrency || 2) - 1, MAX_WORKERS));
  }
  const state = {
    worker: null, helpers: [], workers: cpuWorkers(), mode: params.get('backend') === 'cpu' ? 'cpu' : 'auto',
    limit: Number(params.get('limit')) || 0, reason: '',
    nextId: 1, currentId: 0, views: [], viewsId: 0, shownId: 0, cpuSecondsPerMp: null,
    // Every photo given: {id, name, file, status: waiting | working | done | failed | cancelled,
    // message, png (Blob), url, progress}. Results are kept as PNG blobs, never as pixels, so
    // a long queue stays small; only the photo on show is decoded.
    queue: [],
  };
  // What tests read: the phase (mirrored as `state`), the last result (with its time and the
  // wasm memory of the engine worker and of the largest helper, and how many tiles each helper
  // ran), the engine in use, its CPU workers and the queue ({name, status, message} per photo).
  window.brnPage = { state: 'loading', backend: null, lastPng: null, lastError: null, lastErrorKind: null, results: 0, queue: [] };

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
      : `Using the CPU${engine.reason ? ` (${engine.reason})` : ''}${engine.workers > 1 ? ` on ${engine.workers} workers` : ''}`;
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

  function stopHelpers() {
    for (const helper of state.helpers) helper.terminate();
    state.helpers = [];
  }

  // The CPU path's helper workers, each connected to the engine worker by its own channel.
  function startHelpers(count) {
    stopHelpers();
    const ports = [];
    for (let i = 0; i < count; i += 1) {
      const helper = new Worker('./worker.js');
      const channel = new MessageChannel();
      helper.onerror = (e) => helperFailed(e.message || 'it did not load');
      helper.postMessage({ type: 'helper', port: channel.port1 }, [channel.port1]);
      state.helpers.push(helper);
      ports.push(channel.port2);
    }
    state.worker.postMessage({ type: 'helpers', ports }, ports);
  }

  // A helper worker that stops is a bug or a browser limit: start again on one worker.
  function helperFailed(why) {
    const item = current();
    if (item) setItem(item, 'failed', `a CPU worker stopped (${why})`);
    state.currentId = 0;
    state.workers = 1;
    showMessage(`A CPU worker stopped (${why}); the engine was restarted on one worker.`);
    startWorker();
  }

  function startWorker() {
    if (state.worker) state.worker.terminate();
    stopHelpers();
    setPhase('loading');
    const worker = new Worker('./worker.js');
    state.worker = worker;
    worker.onmessage = (e) => onWorkerMessage(e.data);
    worker.onerror = (e) => {
      setStatus(`The engine failed to load: ${e.message || 'unknown error'}. Reload the page to retry.`, 'error');
      setPhase('failed');
    };
    worker.postMessage({ type: 'init', mode: state.mode, limitOverride: state.limit, workers: state.workers, workersAsked: workersAsked >= 1 });
  }

  function onWorkerMessage(msg) {
    switch (msg.type) {
      case 'status':
        setStatus(msg.text);
        break;
      case 'want-helpers':
        startHelpers(msg.count);
        break;
      case 'helpers-dropped':
        stopHelpers();
        state.workers = 1;
        showMessage(`Deraining on one CPU worker: ${msg.reason}.`, 'info');
        break;
      case 'gpu-failed':
        state.mode = 'cpu';
        state.reason = msg.reason;
        startWorker();
        break;
      case 'ready': {
        state.engineReady = true;
        const engine = msg.engine;
        if (state.reason) engine.reason = state.reason;
        // The engine's estimate from its warm-up (a small image, few stages).
        if (msg.estimate) state.cpuSecondsPerMp = msg.estimate;
        state.engine = engine;
        showWeights(msg.weights);
        window.brnPage.backend = engine.backend;
        window.brnPage.workers = engine.workers;
        setPhase(msg.weights ? 'ready' : 'no-weights');
        setStatus(engineText(engine, msg.weights));
        if (!msg.weights) {
          showMessage('This build has no default weights: load a weights file (.safetensors or an authors\' .pth) above.', 'info');
        }
        pump();
        break;
      }
      case 'weights':
        showWeights(msg.weights);
        setPhase('ready');
        setStatus(engineText(state.engine, msg.weights));
        showMessage(`Loaded ${msg.weights.label}.`, 'info');
        pump();
        break;
      case 'progress': {
        if (msg.id !== state.currentId) break;
        $('bar').max = msg.total;
        $('bar').value = msg.done;
        const eta = msg.done > 0 ? (msg.seconds / msg.done) * (msg.total - msg.done) : 0;
        $('progress-text').textContent = `${current() ? `${current().name}: ` : ''}tile ${msg.done} of ${msg.total} · ${fmtSeconds(msg.seconds)}`
          + (msg.done < msg.total ? ` · about ${fmtSeconds(eta)} left` : '');
        if (current()) setItem(current(), 'working', `tile ${msg.done} of ${msg.total}`);
        break;
      }
      case 'result':
        if (msg.id !== state.currentId) break;
        showResult(msg);
        break;
      case 'error': {
        // A failed derain or weights load leaves the engine as it was.
        if (busy()) setPhase(state.weights ? 'ready' : 'no-weights');
        window.brnPage.lastError = msg.message;
        window.brnPage.lastErrorKind = msg.kind;
        const item = msg.during === 'derain' ? state.queue.find((i) => i.id === msg.id) : null;
        const cancelled = msg.kind === 'cancelled';
        if (item) {
          setItem(item, cancelled ? 'cancelled' : 'failed', cancelled ? '' : msg.message);
          state.currentId = 0;
        }
        if (cancelled) {
          showMessage(`Cancelled ${item ? `"${item.name}"` : ''}.`, 'info');
        } else if (msg.during === 'derain') {
          showMessage(`Could not derain "${item ? item.name : 'this file'}": ${msg.message}`);
        } else if (msg.during === 'weights') {
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
        break;
      }
      default:
        break;
    }
  }

  // The queue. Photos wait until the engine is free; each one's state shows in the list.
  const current = () => state.queue.find((i) => i.id === state.currentId && i.status === 'working');

  function addPhotos(files) {
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

  // Start the next waiting photo when the engine is free.
  function pump() {
    if (phase !== 'ready') return;
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
      state.worker.postMessage({
        type: 'derain', id: item.id, file: buffer,
        stages: Number($('stages').value), keepStages: $('keep-stages').checked,
      }, [buffer]);
    }, (e) => {
      setItem(item, 'failed', `cannot read the file (${e.message})`);
      setPhase('ready');
      pump();
    });
  }

  function setItem(item, status, message) {
    item.status = status;
    item.message = message || '';
    // A done photo keeps its original for the "before" side; a failed or cancelled one drops it.
    if (status === 'failed' || status === 'cancelled') item.file = null;
    renderQueue();
  }

  const STATUS_TEXT = { waiting: 'waiting', working: 'working', done: 'done', failed: 'failed', cancelled: 'cancelled' };

  function renderQueue() {
    const list = $('queue-list');
    list.textContent = '';
    for (const item of state.queue) {
      const li = document.createElement('li');
      li.dataset.status = item.status;
      li.dataset.id = String(item.id);
      if (item.id === state.shownId) li.setAttribute('aria-current', 'true');
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = item.name;
      const text = document.createElement('span');
      text.className = 'state';
      text.textContent = STATUS_TEXT[item.status] + (item.message ? `: ${item.message}` : '');
      li.append(name, text);
      if (item.status === 'done') {
        const view = document.createElement('button');
        view.type = 'button';
        view.className = 'small view';
        view.textContent = 'View';
        view.addEventListener('click', () => viewItem(item));
        const link = document.createElement('a');
        link.className = 'button small download';
        link.href = item.url;
        link.download = resultName(item);
        link.textContent = 'PNG';
        li.append(view, link);
      }
      list.appendChild(li);
    }
    const count = (s) => state.queue.filter((i) => i.status === s).length;
    const done = count('done');
    $('queue').hidden = state.queue.length < 2 && !state.queue.some((i) => i.status === 'failed');
    $('queue-summary').textContent = `${state.queue.length} photo(s): ${done} done`
      + `${count('working') + count('waiting') ? `, ${count('working') + count('waiting')} to go` : ''}`
      + `${count('failed') ? `, ${count('failed')} failed` : ''}${count('cancelled') ? `, ${count('cancelled')} cancelled` : ''}`;
    $('download-all').disabled = done === 0;
    $('cancel-all').disabled = !state.queue.some((i) => i.status === 'waiting' || i.status === 'working');
    window.brnPage.queue = state.queue.map((i) => ({ name: i.name, status: i.status, message: i.message }));
  }

  const resultName = (item) => `${item.name.replace(/\.[^.]*$/, '') || 'photo'}-derained.png`;

  function draw(canvas, view, width, height) {
    canvas.width = width;
    canvas.height = height;
    canvas.getContext('2d').putImageData(new ImageData(view.rgba, width, height), 0, 0);
  }

  // The view select: the views of the newest result (input, derained, rain, stages), or only
  // the derained photo for an earlier one. Views are known by their key (`input`, `derained`,
  // `rain`, `stage3-background`, ...: the engine names them), never by position.
  function fillViews(views) {
    const select = $('view');
    select.textContent = '';
    for (const view of views) {
      if (view.key === 'input') continue; // the input is the "before" side
      const o = document.createElement('option');
      o.value = view.key;
      o.textContent = view.label;
      select.appendChild(o);
    }
    select.value = 'derained';
  }

  const viewOf = (views, key) => views.find((v) => v.key === key);

  function showItem(item, size, elapsed) {
    if (state.shownOrphan && state.shownOrphan !== item.url) URL.revokeObjectURL(state.shownOrphan);
    state.shownOrphan = null;
    state.shownId = item.id;
    state.size = size;
    state.zoom = 'fit';
    $('download').href = item.url;
    $('download').download = resultName(item);
    $('elapsed').textContent = elapsed;
    $('result').hidden = false;
    renderQueue();
    layout();
  }

  // Show an earlier result again, decoding its PNG and the original photo (the browser's
  // decoder; a format it lacks, such as TIFF, shows the result on both sides).
  async function viewItem(item) {
    if (item.id === state.viewsId) {
      fillViews(state.views);
      draw($('before'), viewOf(state.views, 'input'), item.width, item.height);
      draw($('after'), viewOf(state.views, 'derained'), item.width, item.height);
      showItem(item, [item.width, item.height], item.elapsed);
      return;
    }
    try {
      const after = await createImageBitmap(item.png);
      const before = item.file ? await createImageBitmap(item.file).catch(() => after) : after;
      for (const [canvas, bitmap] of [[$('before'), before], [$('after'), after]]) {
        canvas.width = item.width;
        canvas.height = item.height;
        canvas.getContext('2d').drawImage(bitmap, 0, 0, item.width, item.height);
      }
      fillViews([{ key: 'derained', label: 'Derained' }]);
      showItem(item, [item.width, item.height], item.elapsed);
    } catch (e) {
      showMessage(`Cannot show "${item.name}": ${e.message}`);
    }
  }

  function showResult(msg) {
    const item = state.queue.find((i) => i.id === msg.id);
    state.views = msg.views;
    state.viewsId = msg.id;
    fillViews(msg.views);
    draw($('before'), viewOf(msg.views, 'input'), msg.width, msg.height);
    draw($('after'), viewOf(msg.views, 'derained'), msg.width, msg.height);
    item.png = new Blob([msg.png], { type: 'image/png' });
    item.url = URL.createObjectURL(item.png);
    item.width = msg.width;
    item.height = msg.height;
    const mp = (msg.width * msg.height) / 1e6;
    item.elapsed = `${msg.width}×${msg.height} in ${fmtSeconds(msg.seconds)} `
      + `(${fmtSeconds(msg.seconds / mp)} per megapixel, ${msg.backend === 'webgpu' ? 'WebGPU' : 'CPU'})`;
    setItem(item, 'done', `${fmtSeconds(msg.seconds)}`);
    state.currentId = 0;
    showItem(item, [msg.width, msg.height], item.elapsed
      + (!msg.stagesKept && $('keep-stages').checked
        ? ` · stage views are kept for photos up to ${state.engine.stageViewPixels / 1e6} MP` : ''));
    if (msg.estimate && state.engine) {
      // A real photo's speed replaces the warm-up's rough estimate.
      state.cpuSecondsPerMp = msg.estimate;
      setStatus(engineText(state.engine, state.weights));
    }
    window.brnPage.lastPng = msg.png;
    window.brnPage.lastSeconds = msg.seconds;
    window.brnPage.memory = msg.memory;
    window.brnPage.tilesByHelper = msg.tilesByHelper;
    window.brnPage.results += 1;
    setPhase('ready');
    pump();
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
    const weights = files.filter((f) => /\.(pth|safetensors)$/i.test(f.name));
    if (weights.length) loadWeightsFile(weights[0]);
    const photos = files.filter((f) => !weights.includes(f));
    if (photos.length) addPhotos(photos);
  });
  document.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData ? e.clipboardData.items : [])]
      .filter((i) => i.kind === 'file').map((i) => i.getAsFile()).filter(Boolean);
    if (files.length) addPhotos(files);
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
  $('cancel-all').addEventListener('click', () => {
    for (const item of state.queue) {
      if (item.status === 'waiting') setItem(item, 'cancelled');
    }
    if (current()) {
      state.worker.postMessage({ type: 'cancel' });
      $('progress-text').textContent = 'cancelling after this tile…';
    }
  });
  $('download-all').addEventListener('click', async () => {
    const done = state.queue.filter((i) => i.status === 'done');
    if (!done.length) return;
    const entries = await Promise.all(done.map(async (item) => ({
      name: resultName(item), bytes: new Uint8Array(await item.png.arrayBuffer()),
    })));
    const url = URL.createObjectURL(window.brnZip.make(entries));
    const a = document.createElement('a');
    a.href = url;
    a.download = 'derained.zip';
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  });
  // Finished photos leave the list; the one on show stays viewable and downloadable until
  // another is shown (its PNG is released then).
  $('clear-finished').addEventListener('click', () => {
    state.queue = state.queue.filter((item) => {
      const keep = item.status === 'waiting' || item.status === 'working';
      if (!keep && item.url && item.id !== state.shownId) URL.revokeObjectURL(item.url);
      if (!keep && item.id === state.shownId) state.shownOrphan = item.url;
      return keep;
    });
    renderQueue();
  });
  $('view').addEventListener('change', () => {
    if (state.shownId !== state.viewsId) return; // an earlier photo has only its result
    const view = viewOf(state.views, $('view').value);
    if (view) draw($('after'), view, state.size[0], state.size[1]);
  });
  $('slider').addEventListener('input', (e) => setSlider(Number(e.target.value)));

  // Offline use after the first visit (service-worker.js). `brnPage.offline` says where that
  // stands: installing, ready, unsupported (no service workers, or not a secure context), failed.
  if ('serviceWorker' in navigator && window.isSecureContext) {
    window.brnPage.offline = navigator.serviceWorker.controller ? 'ready' : 'installing';
    navigator.serviceWorker.register('./service-worker.js').then(() => navigator.serviceWorker.ready).then(() => {
      if (navigator.serviceWorker.controller) window.brnPage.offline = 'ready';
      else navigator.serviceWorker.addEventListener('controllerchange', () => { window.brnPage.offline = 'ready'; });
    }, () => { window.brnPage.offline = 'failed'; });
  } else {
    window.brnPage.offline = 'unsupported';
  }

  startWorker();
})();
