// A helper worker: the CPU engine with the engine worker's weights, running the tiles it is
// sent over `port` and answering each request by its id.

import * as protocol from './protocol.js';
import { Msg } from './protocol.js';
import { Engine, errorText, isFatal, startWasm } from './wasm.js';

export function serveTiles(port) {
  let engine = null;
  let wasm = null;
  const started = startWasm().then((exports) => {
    wasm = exports;
    engine = Engine.cpu();
  });
  port.onmessage = async (event) => {
    const msg = event.data;
    try {
      await started;
      if (msg.type === Msg.HELPER_WEIGHTS) {
        engine.loadWeights(new Uint8Array(msg.bytes), msg.label);
        port.postMessage(protocol.helperLoaded(msg.id));
      } else if (msg.type === Msg.TILE) {
        const maps = engine.runTile(msg.pixels, msg.width, msg.height, msg.stages, msg.allStages);
        port.postMessage(protocol.maps(msg.id, maps, wasm.memory.buffer.byteLength), maps.map((m) => m.buffer));
      }
    } catch (e) {
      port.postMessage(protocol.failed(msg.id, errorText(e), isFatal(e) || !engine));
    }
  };
}
