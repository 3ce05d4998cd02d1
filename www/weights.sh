#!/bin/sh
# Page build step (scripts/build-page.sh): put the page's default weights into the built page's
# weights/ with a manifest, in $BRN_PAGE_DIR. Source: $BRN_WEB_WEIGHTS, else the committed
# default record (weights/brn-default.safetensors).
set -eu
src="${BRN_WEB_WEIGHTS:-$(dirname "$0")/../weights/brn-default.safetensors}"
out="$BRN_PAGE_DIR/weights"
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
