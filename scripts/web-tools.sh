#!/usr/bin/env bash
# Installs (once) and puts on PATH what building and testing the page needs, at pinned versions:
# the wasm32 rustup target, trunk 0.21.14, wasm-bindgen-cli at the version in Cargo.lock,
# wasm-opt and playwright-core from npm (tests/browser/package-lock.json) and, with --browser,
# Debian's Chromium. Sourced by run.sh and test.sh; nothing is downloaded by the build itself.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 \
  || rustup target list --installed | grep -qx wasm32-unknown-unknown

have_version() { # command, expected version text
  command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -qF "$2"
}

if ! have_version trunk "trunk 0.21.14"; then
  echo "== installing trunk 0.21.14 (once; a few minutes)"
  cargo install --locked trunk --version 0.21.14
fi

bindgen_version="$(grep -A1 '^name = "wasm-bindgen"$' "$root/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p')"
if ! have_version wasm-bindgen "wasm-bindgen $bindgen_version"; then
  echo "== installing wasm-bindgen-cli $bindgen_version (once; a few minutes)"
  # Not --locked: the CLI's own lockfile pins crates that no longer build with this toolchain.
  cargo install wasm-bindgen-cli --version "$bindgen_version"
fi

if [ ! -x "$root/tests/browser/node_modules/.bin/wasm-opt" ] \
  || [ ! -d "$root/tests/browser/node_modules/playwright-core" ]; then
  echo "== npm ci (binaryen's wasm-opt, playwright-core)"
  (cd "$root/tests/browser" && npm ci --no-audit --no-fund)
fi
export PATH="$root/tests/browser/node_modules/.bin:$HOME/.cargo/bin:$PATH"

if [ "${1:-}" = "--browser" ] && ! command -v "${CHROMIUM:-chromium}" >/dev/null 2>&1; then
  echo "== installing Debian's chromium"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq chromium >/dev/null
fi
