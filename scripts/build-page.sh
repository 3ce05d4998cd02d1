#!/usr/bin/env bash
# Builds the page into a static site that works from any host and any sub-path:
#   1. the `web` crate for wasm32 (release; SIMD from .cargo/config.toml), twice: plain SIMD,
#      and with the `relaxed-simd` feature (the CPU kernels' multiply-adds on relaxed SIMD; it
#      rebuilds only kernels, model and web),
#   2. wasm-bindgen's ES-module glue for the workers (web.js, one for both builds: the script
#      checks that they make the same) and the two modules (web_bg.wasm, web_relaxed_bg.wasm;
#      app/wasm.js loads the one the browser validates),
#   3. wasm-opt -O1 on each (the features every current browser has, relaxed SIMD for its build),
#   4. the page's ES modules (www/app/: the page, its workers, protocol.js) with the engine in a
#      folder named for their contents, app-HASH/, and the style as style-HASH.css (a new
#      deploy is never mixed with a cached old one), index.html pointing at them,
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

app="$stage/app"
mkdir "$app"
features="--enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext
  --enable-mutable-globals --enable-reference-types --enable-multivalue"
for build in plain relaxed; do
  flags=() && [ "$build" = relaxed ] && flags=(--features relaxed-simd)
  echo "-- cargo build -p web --target wasm32-unknown-unknown --release ${flags[*]}"
  (cd "$root" && cargo build -p web --target wasm32-unknown-unknown --release --locked "${flags[@]}")
  echo "-- wasm-bindgen, wasm-opt ($build SIMD)"
  mkdir "$stage/$build"
  wasm-bindgen --target web --no-typescript --out-name web --out-dir "$stage/$build" \
    "$target/wasm32-unknown-unknown/release/web.wasm"
  extra="" && [ "$build" = relaxed ] && extra="--enable-relaxed-simd"
  # shellcheck disable=SC2086 # the feature flags are words
  wasm-opt -O1 $features $extra "$stage/$build/web_bg.wasm" -o "$stage/$build/web_bg.wasm"
done
# One glue for both modules: the feature changes kernels' code, never what the glue binds.
cmp -s "$stage/plain/web.js" "$stage/relaxed/web.js" \
  || { echo "error: the plain and relaxed-SIMD builds' wasm-bindgen glue differ" >&2; exit 1; }
mv "$stage/plain/web.js" "$stage/plain/web_bg.wasm" "$app/"
mv "$stage/relaxed/web_bg.wasm" "$app/web_relaxed_bg.wasm"
rm -r "$stage/plain" "$stage/relaxed"

echo "-- page files"
# The modules import each other by relative names, so they keep theirs; their folder is named
# for the contents of all of them. The service worker stays beside index.html (its scope is
# its folder) under its fixed name.
cp "$www"/app/*.js "$app/"
app_hash="$(cd "$app" && sha256sum $(LC_ALL=C ls) | sha256sum | cut -c1-16)"
mv "$app" "$stage/app-$app_hash"
cp "$www/service-worker.js" "$stage/"
html="$(cat "$www/index.html")"
grep -qF '"app/main.js"' <<<"$html" || { echo "error: www/index.html does not load app/main.js" >&2; exit 1; }
html="${html//\"app\/main.js\"/\"app-$app_hash/main.js\"}"
for file in style.css; do
  hash="$(sha256sum "$www/$file" | cut -c1-16)"
  name="${file%.*}-$hash.${file##*.}"
  cp "$www/$file" "$stage/$name"
  grep -qF "\"$file\"" <<<"$html" || { echo "error: www/index.html does not name $file" >&2; exit 1; }
  html="${html//\"$file\"/\"$name\"}"
done
printf '%s\n' "$html" > "$stage/index.html"
chmod 644 "$stage"/*.* "$stage/app-$app_hash"/*
chmod 755 "$stage/app-$app_hash"

BRN_PAGE_DIR="$stage" sh "$www/weights.sh"
BRN_PAGE_DIR="$stage" sh "$www/offline.sh"

rm -rf "$dist"
mv "$stage" "$dist"
trap - EXIT
chmod 755 "$dist"
echo "-- page built in $dist ($(du -sh "$dist" | cut -f1))"
