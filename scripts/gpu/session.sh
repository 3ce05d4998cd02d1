#!/usr/bin/env bash
# One GPU session (issue 24's measurements, then a training slice that goes on from the default
# weights: issue 21's line), run on the lent machine
# with carry [".gpu"] (see scripts/gpu/pack.sh). Everything it measures goes to $OUT:
# session.log (card, driver, every figure), run.tar (the run folder without its cache, to
# continue anywhere), autotune.tar.xz and kernels.tar.xz.* (the kernel cache for this GPU model).
# SECONDS_LEFT (default 560) bounds the whole script: every step's timeout is capped by what is
# left, keeping RESERVE seconds for the steps after it, so the call returns in time and a slow
# step cannot starve the rest. STEPS (default "1 2 3 4 5 6") picks sections. The run folder lives
# in /tmp/brn-run on the device (seeded from a carried .gpu/run), so a second call on the same
# warm machine (STEPS=6) resumes the training slice where the first stopped.
set -uo pipefail
start=$(date +%s)
budget="${SECONDS_LEFT:-560}"
left() { echo $(( budget - ($(date +%s) - start) )); }
# cap WANTED RESERVE: a timeout of at most WANTED that leaves RESERVE seconds for what follows.
cap() { local c=$(( $(left) - $2 )); [ "$c" -gt "$1" ] && c=$1; [ "$c" -lt 1 ] && c=1; echo "$c"; }
want() { [[ " ${STEPS:-1 2 3 4 5 6} " == *" $1 "* ]]; }
out="${OUT:-/tmp/brn-out}"; mkdir -p "$out"
exec > >(tee -a "$out/session.log") 2>&1
export CUDA_PATH="${CUDA_PATH:-/usr/local/cuda}"
export LD_LIBRARY_PATH="$CUDA_PATH/lib64:${LD_LIBRARY_PATH:-}"
export PYTHONUNBUFFERED=1
brn=/tmp/brn
[ -x "$brn" ] || { xz -dc .gpu/brn.xz > "$brn" && chmod +x "$brn"; }
run=/tmp/brn-run
[ -d "$run" ] || { [ -d .gpu/run ] && cp -r .gpu/run "$run"; }
cache="$run/cache"
echo "== $(date -u +%FT%TZ) machine (budget ${budget} s, steps ${STEPS:-1 2 3 4 5 6})"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
echo "cores: $(nproc); CUDA: $(ls -d "$CUDA_PATH"/include/cuda.h 2>&1); nvrtc: $(ls "$CUDA_PATH"/lib64/libnvrtc.so* 2>&1 | head -1)"
"$brn" --version

if want 1; then
echo "== 1. PyTorch anchor: train step, batch 12 of 100x100, T = 6 (fp32, then bf16 autocast)"
timeout "$(cap 60 420)" python3 .gpu/torch_brn.py train --device cuda --batch 12 --patch 100 --stages 6 --runs 20 --warmup 3
timeout "$(cap 60 400)" python3 .gpu/torch_brn.py train --device cuda --batch 12 --patch 100 --stages 6 --runs 20 --warmup 3 --amp
fi
if want 2; then
had_cache=no; [ -d "$cache/autotune" ] && had_cache=yes
echo "== 2. brn bench --train, same shape (kernel cache present before: $had_cache); weight gradient split into bands (the default on GPUs)"
t0=$(date +%s)
timeout "$(cap 240 260)" "$brn" bench --train --device cuda:0 --batch 12 --size 100 --stages 6 --warmup 3 --runs 20 --cache "$cache" --json
echo "exit $? after $(( $(date +%s) - t0 )) s (process start to end)"
fi
if want 3; then
echo "== 3. again in a fresh process: the first step with the cache just written"
t0=$(date +%s)
timeout "$(cap 90 220)" "$brn" bench --train --device cuda:0 --batch 12 --size 100 --stages 6 --warmup 3 --runs 20 --cache "$cache" --json | tee /tmp/bench-warm.json
echo "exit ${PIPESTATUS[0]} after $(( $(date +%s) - t0 )) s (process start to end)"
echo "== 3b. burn's own weight gradient for comparison (--weight-gradient burn; 0.497 s per step on 2026-11-28)"
t0=$(date +%s)
timeout "$(cap 90 200)" "$brn" bench --train --weight-gradient burn --device cuda:0 --batch 12 --size 100 --stages 6 --warmup 2 --runs 10 --cache "$cache" --json
echo "exit $? after $(( $(date +%s) - t0 )) s (process start to end)"
fi
if want 4; then
echo "== 4. loader throughput of the training config on $(nproc) cores"
timeout "$(cap 30 180)" "$brn" bench --loader .gpu/gpu.json --runs 30
fi
if want 5; then
echo "== 5. GPU inference (issue 13): a 4000x3000 photo at T = 6, CUDA and wgpu; PyTorch forward 1024^2"
for f in .gpu/gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done; ldconfig
for icd in /usr/share/vulkan/icd.d/nvidia_icd.json /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; do
  [ -f "$icd" ] && export VK_DRIVER_FILES="$icd" && break
done
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"
python3 -c "
import numpy as np
from PIL import Image
y, x = np.mgrid[0:3000, 0:4000]
img = np.stack([(x * 7 + y) % 256, (y * 5) % 256, (x ^ y) % 256], -1).astype(np.uint8)
Image.fromarray(img).save('/tmp/photo.png')
"
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > /tmp/gpu-mem.log &
sampler=$!
export BRN_KERNEL_CACHE=/tmp/brn-kernels   # derain's default cache, emptied: runs 1 and 2 show what it saves
# CUDA at T = 6 with derain's kernel cache empty, then again with it filled; T = 4; wgpu (Vulkan).
rm -rf "$BRN_KERNEL_CACHE"
for run_of in "cuda:0 6 cold-cache" "cuda:0 6 warm-cache" "cuda:0 4 warm-cache" "gpu 6 -"; do
  set -- $run_of
  start_ns=$(date +%s%N)
  timeout "$(cap 60 130)" "$brn" derain /tmp/photo.png -o "/tmp/out-$1-$2" --device "$1" --stages "$2" 2>&1 | tail -3
  echo "derain 4000x3000 --device $1 --stages $2 ($3): $(( ($(date +%s%N) - start_ns) / 1000000 )) ms end to end (process start, decode, to PNG written)"
done
kill $sampler 2>/dev/null
echo "peak GPU memory used while deraining: $(sort -n /tmp/gpu-mem.log | tail -1) MiB"
timeout "$(cap 40 100)" python3 .gpu/torch_brn.py forward --device cuda --size 1024 --stages 6 --runs 5
fi
if want 6; then
slice=$(( $(left) - 45 ))
echo "== 6. training slice: $slice s"
if [ "$slice" -gt 40 ]; then
  if [ -f "$run/latest.json" ]; then
    "$brn" train --resume "$run" --device cuda:0 --time-limit "$slice"
  else
    # A new run: its cosine schedule sized to the slice, from step 3's warm seconds per step
    # (scaled by T and pixels per batch to the config's shape; 0.5 s if step 3 did not run), so
    # that the learning rate has come down when the time is up.
    epochs=$(python3 - "$slice" .gpu/gpu.json <<'PY'
import json, sys
slice_s, config = float(sys.argv[1]), json.load(open(sys.argv[2]))
try:
    b = json.load(open("/tmp/bench-warm.json"))[0]
    step_s = b["seconds_per_step"] * config["model"]["stages"] / b["stages"] \
        * config["batch_size"] * config["patch"] ** 2 / (b["batch"] * b["patch"] ** 2)
    if not step_s > 0:
        raise ValueError(step_s)
except (OSError, ValueError, LookupError, TypeError, ZeroDivisionError):
    step_s = 0.5
steps = 0.75 * max(slice_s - 60, 0) / step_s  # a quarter for validation and start-up
epochs = max(1, int(steps // config["steps_per_epoch"]))
print(f"new run from {config.get('init')}: {epochs} epochs, sized to the slice at {step_s:.3f} s per step", file=sys.stderr)
print(epochs)
PY
)
    "$brn" train --config .gpu/gpu.json -o "$run" --device cuda:0 --time-limit "$slice" --epochs "$epochs"
  fi
  tail -5 "$run/log.csv"
fi
fi
echo "== results"
[ -d "$run" ] && tar -cf "$out/run.tar" --exclude=brn-run/cache -C /tmp --transform 's,^brn-run,run,' brn-run
# The autotune results are small and spare the minutes of autotuning; the compiled kernels
# (33 MB as xz on 2026-11-28) come back in parts of 15 MiB when there is room to carry them.
[ -d "$cache/autotune" ] && tar -cf - -C "$run" cache/autotune | xz -T0 -6 > "$out/autotune.tar.xz"
[ -d "$cache/kernels" ] && tar -cf - -C "$run" cache/kernels | xz -T0 -6 | split -b 15m - "$out/kernels.tar.xz."
ls -l "$out"
echo "== done in $(( $(date +%s) - start )) s"
