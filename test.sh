#!/usr/bin/env bash
# Runs every test of the project: formatting, clippy (native and wasm), unit tests, parity with
# the authors' outputs, CLI end to end, then builds the page and tests it in a real browser
# (Debian Chromium headless: WebGPU via SwiftShader, and the CPU fallback; Debian Firefox ESR
# headless: the CPU path). Installs what it needs: rustfmt, clippy, the wasm target,
# wasm-bindgen-cli and npm packages (scripts/web-tools.sh), Chromium, Firefox ESR, Mesa's
# lavapipe Vulkan driver for `brn --device gpu` and Python 3 if missing
# (scripts/system-packages.sh).
# Reads ../shared (override with BRN_SHARED). Build caches live outside the clone.
#
# Each phase prints a line with the time since the start; a table of the phases' times closes
# the run. Tools install in the background while the native build runs (logs in
# $CARGO_TARGET_DIR/test-logs/). Clippy lints the workspace's crates as they are compiled for
# the tests and for the page (clippy-driver as cargo's workspace wrapper, with -D warnings: the
# same lints as `cargo clippy --all-targets -- -D warnings`, native and wasm32), so the
# dependencies are compiled once per target, not once more for a separate clippy pass.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${BRN_TARGET_DIR:-$HOME/.cache/brn/target}"
export BRN_SHARED="${BRN_SHARED:-$(cd .. && pwd)/shared}"
export CARGO_TERM_COLOR=never
# Incremental data is never reused by a fresh clone (its paths differ) and grows the cache by
# gigabytes a run; a plain build of the workspace's crates is also quicker.
export CARGO_INCREMENTAL=0
logs="$CARGO_TARGET_DIR/test-logs"
mkdir -p "$logs"
# Tests that need ../shared fail rather than skip without it (BRN_REQUIRE_SHARED=0: skip them).
export BRN_REQUIRE_SHARED="${BRN_REQUIRE_SHARED:-1}"
weights="$BRN_SHARED/weights/brn/Rain100L.pth"
if [ "$BRN_REQUIRE_SHARED" = 1 ] && [ ! -f "$weights" ]; then
  echo "error: $weights is absent: set BRN_SHARED to the shared folder (or BRN_REQUIRE_SHARED=0 to skip the tests that need it)" >&2
  exit 1
fi

start=$SECONDS
phase_name=""
phase_start=$SECONDS
timings=()
clock() { printf '%d:%02d' $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)); }
end_phase() {
  [ -n "$phase_name" ] && timings+=("$(printf '  %-46s %5d s' "$phase_name" $((SECONDS - phase_start)))")
  phase_name=""
}
phase() { # the next phase's name
  end_phase
  phase_name="$1"
  phase_start=$SECONDS
  printf '\n== [%s] %s\n' "$(clock)" "$1"
}
summary() {
  local code=$?
  [ -n "$phase_name" ] && [ $code -ne 0 ] && failed="$phase_name"
  end_phase
  printf '\n== [%s] test.sh %s\n' "$(clock)" "$([ $code -eq 0 ] && echo passed || echo "FAILED in: ${failed:-setup}")"
  printf '%s\n' "${timings[@]}"
  printf '  %-46s %5d s\n' "total" $((SECONDS - start))
}
trap summary EXIT

# A background job: its output goes to a log, printed if it fails.
declare -A jobs=()
background() { # name, command...
  local name="$1"; shift
  "$@" >"$logs/$name.log" 2>&1 &
  jobs[$name]=$!
  echo "   (in the background: $name, log $logs/$name.log)"
}
join() { # name: wait for a background job, fail with its log if it failed
  local name="$1"
  if ! wait "${jobs[$name]}"; then
    echo "error: $name failed; its log:" >&2
    tail -n 40 "$logs/$name.log" >&2
    return 1
  fi
  unset "jobs[$name]"
}

phase "set-up: rustup components and target; tools in the background"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 \
  || rustup target list --installed | grep -qx wasm32-unknown-unknown
background system-packages bash scripts/system-packages.sh
background web-tools nice -n 10 bash scripts/web-tools.sh
clippy_driver="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)"

phase "cargo fmt --check"
cargo fmt --all --check

phase "native build of every test target, with clippy"
# What `cargo clippy` does, on the real build: clippy-driver compiles the workspace's crates.
RUSTC_WORKSPACE_WRAPPER="$clippy_driver" CLIPPY_ARGS="-Dwarnings" \
  cargo test --workspace --locked --no-run --timings
echo "   (how long each crate took: $CARGO_TARGET_DIR/cargo-timings/cargo-timing.html)"

phase "system packages (Chromium, Firefox ESR, lavapipe, Python 3)"
join system-packages
export BRN_REQUIRE_GPU=1

phase "cargo test (shared data: $BRN_SHARED)"
RUSTC_WORKSPACE_WRAPPER="$clippy_driver" CLIPPY_ARGS="-Dwarnings" \
  cargo test --workspace --locked -- --nocapture

phase "unit and parity tests on narrower CPUs' paths (BRN_SIMD=avx2, none)"
# The kernels' code for CPUs with AVX2 but not AVX-512, and for CPUs with neither, which this
# CPU would not take by itself: the same tests with the instructions capped (kernels/src/simd.rs),
# the test binaries built above (--workspace keeps their features, so nothing is rebuilt).
for simd in avx2 none; do
  echo "   BRN_SIMD=$simd"
  BRN_SIMD=$simd RUSTC_WORKSPACE_WRAPPER="$clippy_driver" CLIPPY_ARGS="-Dwarnings" \
    cargo test --workspace --locked --lib --test parity -q
done

if [ ! -f "$weights" ]; then
  echo "SKIPPED the page build and browser tests: $weights is absent (set BRN_SHARED to the shared folder)"
  exit 0
fi

phase "web tools (wasm-bindgen-cli, npm)"
join web-tools
source scripts/web-tools.sh

phase "page build (wasm32 release, with clippy)"
dist="$CARGO_TARGET_DIR/test-dist"
RUSTC_WORKSPACE_WRAPPER="$clippy_driver" CLIPPY_ARGS="-Dwarnings" \
  BRN_WEB_WEIGHTS="$weights" scripts/build-page.sh "$dist"

# The same tests in both browser engines (Chromium with WebGPU on SwiftShader and the CPU path;
# Firefox ESR, which offers no WebGPU, on the CPU path).
for browser in chromium firefox; do
  phase "browser tests: $browser"
  BRN_BROWSER="$browser" BRN_DIST="$dist" BRN_BIN="$CARGO_TARGET_DIR/debug/brn" node tests/browser/run.mjs
done
