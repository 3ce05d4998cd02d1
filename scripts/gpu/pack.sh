#!/usr/bin/env bash
# Prepares .gpu/ (git-ignored) for a GPU machine lent for minutes, within the 64 MiB that
# travels with the working tree: the CUDA release binary (xz), the training and validation
# photos (re-encoded as JPEG, quality 85 / 95, 4:4:4), the PyTorch anchor (../shared/bench/torch_brn.py), and the training config
# with paths inside .gpu/ (by default configs/brn-default-gpu-finetune.json: the default weights
# trained on, with their file). A run folder .gpu/run (and its kernel cache) from an earlier
# session is kept, so the next slice resumes it. Then, on the GPU machine (device tool):
#   run(command="bash scripts/gpu/session.sh", carry=[".gpu"], timeout_s=600)
# Needs: cargo, python3 (a virtualenv with Pillow is made in ~/.cache/brn/pack-venv), xz.
# `--data-only` skips the build (to check the data and the size budget).
set -euo pipefail
cd "$(dirname "$0")/../.."
shared="${BRN_SHARED:-$(cd .. && pwd)/shared}"
export CARGO_TARGET_DIR="${BRN_TARGET_DIR:-$HOME/.cache/brn/target}"
quality="${PACK_JPEG_QUALITY:-85}"
budget_mib="${PACK_BUDGET_MIB:-60}"

mkdir -p .gpu/data
if [ "${1:-}" != "--data-only" ]; then
  echo "== CUDA release build (offline; CUDA 13 driver API)"
  CUDARC_CUDA_VERSION=13000 cargo build --release --locked -p brn --features cuda
  strip -o .gpu/brn "$CARGO_TARGET_DIR/release/brn"
  xz -T0 -9 -f .gpu/brn
fi
cp "$shared/bench/torch_brn.py" .gpu/
# The Vulkan loader and libglvnd for `brn --device gpu`: the GPU machine's NVIDIA Vulkan ICD
# (libGLX_nvidia.so.0) fails vkCreateInstance without libglvnd's libraries (seen 2026-11-28).
if [ ! -f .gpu/gl/done-glvnd ]; then
  mkdir -p .gpu/gl && (cd .gpu/gl && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 \
    libgl1 libglx0 libgles2 >/dev/null && touch done-glvnd) \
    || echo "warning: could not download the Vulkan loader and libglvnd; --device gpu may not start there"
fi

venv="$HOME/.cache/brn/pack-venv"
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q pillow; }
echo "== photos as JPEG q$quality"
"$venv/bin/python" - "$shared/data/clean" .gpu/data "$quality" <<'PY'
import sys, pathlib
from PIL import Image
src, dst, q = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
# BSDS500's test split stays home: 418 photos are plenty for minutes of training, and the
# 64 MiB carry must also hold the binary, the run folder and its kernel cache.
sets = {"train": ["bsds500/train", "bsds500/val", "urban100", "mcmaster"],
        "val": ["set5", "set14"]}
for group, folders in sets.items():
    for folder in folders:
        out = dst / group / folder.replace("/", "-")
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted((src / folder).iterdir()):
            if f.suffix.lower() not in {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}:
                continue
            target = out / (f.stem + ".jpg")
            if target.exists():
                continue
            # The decoded JPEG is the clean image, for training and validation alike; 4:4:4
            # keeps colour edges (validation a notch finer: it ranks checkpoints).
            img = Image.open(f).convert("RGB")
            img.save(target, quality=min(q + 10, 95) if group == "val" else q, subsampling=0)
PY
# The slice continues the default weights (issue 21's line) unless PACK_CONFIG names another
# config (configs/brn-default-gpu.json: the paper's schedule from scratch, T = 6).
python3 - "${PACK_CONFIG:-configs/brn-default-gpu-finetune.json}" <<'PY'
import json, pathlib, shutil, sys
config = json.load(open(sys.argv[1]))
root = pathlib.Path(".gpu/data")
config["clean"] = sorted(str(p) for p in (root / "train").iterdir())
config["validation"] = sorted(str(p) for p in (root / "val").iterdir())
if config.get("init"):
    # The starting weights travel too (0.76 MB for the f16 default).
    shutil.copyfile(config["init"], ".gpu/init.safetensors")
    config["init"] = ".gpu/init.safetensors"
json.dump(config, open(".gpu/gpu.json", "w"), indent=2)
print(f"training config {sys.argv[1]} -> .gpu/gpu.json (init: {config.get('init')})")
PY
# What travels: tracked files, untracked files git does not ignore, and the carried .gpu/.
bytes=$( { git ls-files -z; git ls-files -z -o --exclude-standard; } \
  | xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
gpu_bytes=$(du -sb .gpu | cut -f1)
size=$(( (bytes + gpu_bytes) / 1048576 ))
echo "== what travels: ${size} MiB (working tree $(( bytes / 1048576 )) + .gpu $(( gpu_bytes / 1048576 )); limit 64, budget ${budget_mib})"
du -sh .gpu/* | sort -h
if [ "$size" -gt "$budget_mib" ]; then
  echo "too large: lower PACK_JPEG_QUALITY or move .gpu/run/cache out" >&2
  exit 1
fi
