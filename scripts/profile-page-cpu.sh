#!/usr/bin/env bash
# Profiles the page's CPU path (issue 36) in node: builds the `web` crate for wasm32 as the page
# does (plain SIMD, or relaxed SIMD with `relaxed`), keeps its function names (wasm-bindgen
# leaves them, wasm-opt -g keeps them through -O1), runs the engine on one tile under V8's
# sampling profiler (tests/browser/profile.mjs) and prints where the time went.
# Usage: scripts/profile-page-cpu.sh [plain|relaxed] [SIDE, default 214: a fitted tile of a
# 512x512 photo] (the tools from scripts/web-tools.sh; the default weights)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-plain}"
side="${2:-214}"
target="$(realpath -m "${CARGO_TARGET_DIR:-$root/target}")"
flags=() && [ "$build" = relaxed ] && flags=(--features relaxed-simd)
(cd "$root" && cargo build -p web --target wasm32-unknown-unknown --release --locked "${flags[@]}")
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
wasm-bindgen --target web --no-typescript --out-name web --out-dir "$out" \
  "$target/wasm32-unknown-unknown/release/web.wasm"
echo '{"type": "module"}' > "$out/package.json"
extra="" && [ "$build" = relaxed ] && extra="--enable-relaxed-simd"
# shellcheck disable=SC2086 # the feature flags are words
wasm-opt -O1 -g --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue $extra \
  "$out/web_bg.wasm" -o "$out/web_bg.wasm"
node_flags=() && [ "$build" = relaxed ] && node_flags=(--experimental-wasm-relaxed-simd)
node "${node_flags[@]}" --cpu-prof --cpu-prof-dir="$out/profile" "$root/tests/browser/profile.mjs" \
  "$out" "$root/weights/brn-default.safetensors" "$side" 3
node "$root/tests/browser/profile.mjs" --report "$out"/profile/*.cpuprofile 12
