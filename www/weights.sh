#!/bin/sh
# Trunk post-build hook: put the page's default weights into dist/weights/ with a manifest.
# Source: $BRN_WEB_WEIGHTS, else the committed default record (../weights/brn-default.safetensors).
set -eu
src="${BRN_WEB_WEIGHTS:-$TRUNK_SOURCE_DIR/../weights/brn-default.safetensors}"
out="$TRUNK_STAGING_DIR/weights"
mkdir -p "$out"
if [ -f "$src" ]; then
  ext="${src##*.}"
  cp "$src" "$out/default.$ext"
  chmod 644 "$out/default.$ext"
  version=$(sha256sum "$src" | cut -c1-16)
  bytes=$(wc -c < "$src" | tr -d ' ')
  label=$(basename "$src" | sed 's/"//g')
  printf '{"file":"default.%s","version":"%s","label":"%s","bytes":%s}\n' \
    "$ext" "$version" "$label" "$bytes" > "$out/manifest.json"
  echo "default weights: $src ($bytes bytes)"
else
  echo "warning: no default weights at $src; the page will ask for a weights file" >&2
  echo '{"file":null}' > "$out/manifest.json"
fi
