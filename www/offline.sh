#!/bin/sh
# Page build step (scripts/build-page.sh, after weights.sh): list the built page's files in
# $BRN_PAGE_DIR for the service worker (service-worker.js) in offline-manifest.js, with a
# version made from their contents, so that a new deploy replaces the cached page. The default
# weights are left out: worker.js caches them.
set -eu
cd "$BRN_PAGE_DIR"
files=$(find . -type f ! -name service-worker.js ! -name offline-manifest.js \
  ! -path './weights/default.*' | sed 's|^\./||' | LC_ALL=C sort)
version=$(for f in $files; do sha256sum "$f"; done | sha256sum | cut -c1-16)
{
  printf 'self.BRN_OFFLINE = {\n  version: "%s",\n  files: ["./"' "$version"
  for f in $files; do printf ', "./%s"' "$f"; done
  printf '],\n};\n'
} > offline-manifest.js
echo "offline: $(echo "$files" | wc -w) files, version $version"
