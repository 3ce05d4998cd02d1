#!/usr/bin/env bash
# Installs (once) and puts on PATH what building and testing the page needs, at pinned versions:
# the wasm32 rustup target, wasm-bindgen-cli at the version in Cargo.lock (built from crates.io:
# the one tool compiled here, about 3 minutes on 2 cores), wasm-opt, playwright-core (Chromium)
# and puppeteer-core (Firefox) from npm (tests/browser/package-lock.json). Sourced by run.sh and
# test.sh (test.sh also runs it in the background while the native build goes on); nothing is
# downloaded by the page build itself.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 \
  || rustup target list --installed | grep -qx wasm32-unknown-unknown

have_version() { # command, expected version text
  command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -qF "$2"
}

export PATH="$root/tests/browser/node_modules/.bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

if [ ! -x "$root/tests/browser/node_modules/.bin/wasm-opt" ] \
  || [ ! -d "$root/tests/browser/node_modules/playwright-core" ] \
  || [ ! -d "$root/tests/browser/node_modules/puppeteer-core" ]; then
  echo "== npm ci (binaryen's wasm-opt, playwright-core, puppeteer-core)"
  (cd "$root/tests/browser" && npm ci --no-audit --no-fund --loglevel=error)
fi

bindgen_version="$(grep -A1 '^name = "wasm-bindgen"$' "$root/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p')"
if ! have_version wasm-bindgen "wasm-bindgen $bindgen_version"; then
  echo "== installing wasm-bindgen-cli $bindgen_version (once; a few minutes)"
  # Not --locked: the CLI's own lockfile pins crates that no longer build with this toolchain.
  # Its build folder is its own (not the project's), so that it never waits on the project's.
  CARGO_TARGET_DIR="${BRN_TOOLS_TARGET_DIR:-${TMPDIR:-/tmp}/brn-tools-target}" \
    cargo install --quiet wasm-bindgen-cli --version "$bindgen_version"
fi
