// The page's Web Workers, one module for both roles. The engine worker (started by the page
// with an `init` message) owns the wasm engine (WebGPU device or CPU), the weights and every
// derain, so the page never freezes: engine-worker.js. On the CPU with several workers, the
// page also starts helper workers (this module, given a MessagePort by a `serve` message) and
// hands the engine worker the other ends: the engine worker then decodes, shares the tiles out
// among the helpers (helper-pool.js), blends and encodes, and each helper runs the network on
// the tiles it is sent (tile-server.js; same weights, so the same pixels).

import { handle } from './engine-worker.js';
import { Msg } from './protocol.js';
import { serveTiles } from './tile-server.js';

self.onmessage = (event) => {
  const msg = event.data;
  if (msg.type === Msg.SERVE) serveTiles(msg.port);
  else handle(msg);
};
