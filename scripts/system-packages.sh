#!/usr/bin/env bash
# Installs (once, through apt) the Debian packages the tests need: Chromium and Firefox ESR for
# the browser tests, Mesa's Vulkan drivers (lavapipe: `brn --device gpu` on the CPU), Python 3
# (the browser tests read the page's zip with its zipfile module). A no-op when all are there.
set -euo pipefail
missing=()
command -v "${CHROMIUM:-chromium}" >/dev/null 2>&1 || missing+=(chromium)
command -v "${FIREFOX:-firefox-esr}" >/dev/null 2>&1 || missing+=(firefox-esr)
ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers libvulkan1)
command -v python3 >/dev/null 2>&1 || missing+=(python3-minimal)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "== apt-get install ${missing[*]}"
sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
$sudo_ apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
