#!/usr/bin/env bash
# The main job. With no arguments: builds the page (wasm, with the default weights) into dist/
# and serves it at http://127.0.0.1:8080 (set PORT to change). dist/ is a static site: copy it
# to any host, at any sub-path. With arguments: builds and runs the native `brn` command,
# e.g. ./run.sh derain photo.jpg -o out
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${BRN_TARGET_DIR:-$HOME/.cache/brn/target}"
if [ $# -eq 0 ] || [ "$1" = "serve" ]; then
  source scripts/web-tools.sh
  scripts/build-page.sh dist
  port="${PORT:-8080}"
  echo "== serving dist/ at http://127.0.0.1:$port/ (Ctrl-C stops)"
  exec python3 -m http.server --bind 127.0.0.1 --directory dist "$port"
fi
cargo build --release --locked -p brn
exec "$CARGO_TARGET_DIR/release/brn" "$@"
