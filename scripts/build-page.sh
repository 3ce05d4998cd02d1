#!/usr/bin/env bash
# Builds the page into a static site that works from any host and any sub-path:
#   1. the `web` crate for wasm32 (release; SIMD from .cargo/config.toml),
#   2. wasm-bindgen's no-modules glue for the engine worker (web.js, web_bg.wasm),
#   3. wasm-opt -O1 on it (the features every current browser has),
#   4. the page's own files, style and scripts under content-hashed names (a new deploy is never
#      mixed with a cached old one), index.html pointing at them,
#   5. the default weights with their manifest (www/weights.sh) and the service worker's list
#      of files (www/offline.sh).
# Usage: scripts/build-page.sh [DIST]   (default: dist/ at the repository root)
# The tools come from scripts/web-tools.sh (source it first); nothing is downloaded here.
# BRN_WEB_WEIGHTS=FILE builds with other default weights (a record or an authors' .pth).
# The site is made in a folder beside DIST and moved into place only when complete.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dist="$(realpath -m "${1:-$root/dist}")"
target="$(realpath -m "${CARGO_TARGET_DIR:-$root/target}")"
www="$root/www"

for tool in wasm-bindgen wasm-opt; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not on PATH (source scripts/web-tools.sh)" >&2; exit 1; }
done

mkdir -p "$(dirname "$dist")"
stage="$(mktemp -d "$(dirname "$dist")/.page-XXXXXX")"
trap 'rm -rf "$stage"' EXIT

echo "-- cargo build -p web --target wasm32-unknown-unknown --release"
(cd "$root" && cargo build -p web --target wasm32-unknown-unknown --release --locked)

echo "-- wasm-bindgen, wasm-opt"
wasm-bindgen --target no-modules --no-typescript --out-name web --out-dir "$stage" \
  "$target/wasm32-unknown-unknown/release/web.wasm"
wasm-opt -O1 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
  "$stage/web_bg.wasm" -o "$stage/web_bg.wasm"

echo "-- page files"
# Workers are loaded by their fixed names (the page starts them; the service worker's scope is
# its folder), so they keep them; the service worker's cache version covers their contents.
cp "$www/worker.js" "$www/service-worker.js" "$stage/"
html="$(cat "$www/index.html")"
for file in style.css zip.js main.js; do
  hash="$(sha256sum "$www/$file" | cut -c1-16)"
  name="${file%.*}-$hash.${file##*.}"
  cp "$www/$file" "$stage/$name"
  grep -qF "\"$file\"" <<<"$html" || { echo "error: www/index.html does not name $file" >&2; exit 1; }
  html="${html//\"$file\"/\"$name\"}"
done
printf '%s\n' "$html" > "$stage/index.html"
chmod 644 "$stage"/*

BRN_PAGE_DIR="$stage" sh "$www/weights.sh"
BRN_PAGE_DIR="$stage" sh "$www/offline.sh"

rm -rf "$dist"
mv "$stage" "$dist"
trap - EXIT
chmod 755 "$dist"
echo "-- page built in $dist ($(du -sh "$dist" | cut -f1))"
