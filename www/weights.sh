#!/bin/sh
# Page build step (scripts/build-page.sh): put the page's default weights into the built page's
# weights/ with a manifest (file, version, full SHA-256, which the engine worker checks the bytes
# against, label, size), in $BRN_PAGE_DIR. Source: $BRN_WEB_WEIGHTS, else the committed
# default record (weights/brn-default.safetensors).
set -eu
src="${BRN_WEB_WEIGHTS:-$(dirname "$0")/../weights/brn-default.safetensors}"
out="$BRN_PAGE_DIR/weights"
mkdir -p "$out"
if [ -f "$src" ]; then
  ext="${src##*.}"
  cp "$src" "$out/default.$ext"
  chmod 644 "$out/default.$ext"
  sha256=$(sha256sum "$src" | cut -c1-64)
  version=$(echo "$sha256" | cut -c1-16)
  bytes=$(wc -c < "$src" | tr -d ' ')
  label=$(basename "$src" | sed 's/"//g')
  printf '{"file":"default.%s","version":"%s","sha256":"%s","label":"%s","bytes":%s}\n' \
    "$ext" "$version" "$sha256" "$label" "$bytes" > "$out/manifest.json"
  echo "default weights: $src ($bytes bytes)"
else
  echo "warning: no default weights at $src; the page will ask for a weights file" >&2
  echo '{"file":null}' > "$out/manifest.json"
fi
