#!/usr/bin/env bash
# Runs every test of the project: formatting, lints (native and wasm), unit tests, parity with
# the authors' outputs, CLI end to end, then builds the page and tests it in a real browser
# (Debian Chromium headless: WebGPU via SwiftShader, and the CPU fallback). Installs what it
# needs (rustfmt, clippy, the wasm target, trunk, wasm-bindgen-cli, npm packages, Chromium,
# Mesa's lavapipe Vulkan driver for `brn --device gpu`, Python 3 if missing).
# Reads ../shared (override with BRN_SHARED). Build caches live outside the clone.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${BRN_TARGET_DIR:-$HOME/.cache/brn/target}"
export BRN_SHARED="${BRN_SHARED:-$(cd .. && pwd)/shared}"
export CARGO_TERM_COLOR=never

rustup component add rustfmt clippy >/dev/null 2>&1 || true
source scripts/web-tools.sh --browser
# Mesa's lavapipe: a Vulkan driver on the CPU, so that `brn --device gpu` is tested here too.
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  echo "== installing Mesa's Vulkan drivers (lavapipe)"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
export BRN_REQUIRE_GPU=1
# Python 3: the browser tests read the page's zip with its zipfile module (run.sh serves with it).
if ! command -v python3 >/dev/null 2>&1; then
  echo "== installing Python 3"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq python3-minimal >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy (native)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo clippy (web, wasm32)"
cargo clippy -p web --target wasm32-unknown-unknown --locked -- -D warnings
echo "== cargo test (shared data: $BRN_SHARED)"
cargo test --workspace --locked -- --nocapture

echo "== browser tests"
weights="$BRN_SHARED/weights/brn/Rain100L.pth"
if [ ! -f "$weights" ]; then
  echo "SKIPPED browser tests: $weights is absent (set BRN_SHARED to the shared folder)"
  exit 0
fi
dist="$CARGO_TARGET_DIR/test-dist"
(cd www && BRN_WEB_WEIGHTS="$weights" trunk build --release --dist "$dist")
ls -l "$dist"
BRN_DIST="$dist" BRN_BIN="$CARGO_TARGET_DIR/debug/brn" node tests/browser/run.mjs
