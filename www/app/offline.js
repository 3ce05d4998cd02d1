// Offline use after the first visit (service-worker.js, beside index.html). `brnPage.offline`
// says where that stands: installing, ready, unsupported (no service workers, or not a secure
// context), failed.

import { hook } from './state.js';

export function initOffline() {
  if (!('serviceWorker' in navigator) || !window.isSecureContext) {
    hook.offline = 'unsupported';
    return;
  }
  const workers = navigator.serviceWorker;
  hook.offline = workers.controller ? 'ready' : 'installing';
  // Beside index.html (relative to the page, not to this module), so its scope is the page's folder.
  workers.register('./service-worker.js').then(() => workers.ready).then(() => {
    if (workers.controller) hook.offline = 'ready';
    else workers.addEventListener('controllerchange', () => { hook.offline = 'ready'; });
  }, () => { hook.offline = 'failed'; });
}
