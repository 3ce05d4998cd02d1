#!/usr/bin/env bash
# The main job: builds the `brn` command (release) and, once the page lands, builds and serves it.
# Usage: ./run.sh [brn arguments...]   e.g. ./run.sh derain photo.jpg -o out --weights FILE
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${BRN_TARGET_DIR:-$HOME/.cache/brn/target}"
cargo build --release --locked -p trainer
exec "$CARGO_TARGET_DIR/release/brn" "${@:---help}"
