#!/usr/bin/env bash
# One GPU session (issue 10/13 measurements, then an issue 11 training slice), run on the lent machine
# with carry [".gpu"] (see scripts/gpu/pack.sh). Everything it measures goes to $OUT:
# session.log (card, driver, every figure), run.tar (the run folder without its cache, to
# continue anywhere) and cache.tar (compiled kernels and autotune results for this GPU model).
# SECONDS_LEFT (default 560) bounds the whole script, so the call returns in time; STEPS
# (default "1 2 3 4 5 6") picks sections, to split the work over two calls.
set -uo pipefail
start=$(date +%s)
budget="${SECONDS_LEFT:-560}"
left() { echo $(( budget - ($(date +%s) - start) )); }
want() { [[ " ${STEPS:-1 2 3 4 5 6} " == *" $1 "* ]]; }
out="${OUT:-/tmp/brn-out}"; mkdir -p "$out"
exec > >(tee -a "$out/session.log") 2>&1
export CUDA_PATH="${CUDA_PATH:-/usr/local/cuda}"
export LD_LIBRARY_PATH="$CUDA_PATH/lib64:${LD_LIBRARY_PATH:-}"
export PYTHONUNBUFFERED=1
brn=/tmp/brn
xz -dc .gpu/brn.xz > "$brn" && chmod +x "$brn"
cache=.gpu/run/cache
echo "== $(date -u +%FT%TZ) machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
nproc

if want 1; then
echo "== 1. PyTorch anchor: train step, batch 12 of 100x100, T = 6 (fp32, then bf16 autocast)"
timeout 120 python3 .gpu/torch_brn.py train --device cuda --batch 12 --patch 100 --stages 6 --runs 20 --warmup 3
timeout 120 python3 .gpu/torch_brn.py train --device cuda --batch 12 --patch 100 --stages 6 --runs 20 --warmup 3 --amp
fi
if want 2; then
had_cache=no; [ -d "$cache/autotune" ] && had_cache=yes
echo "== 2. brn bench --train, same shape (kernel cache present before: $had_cache)"
timeout 330 "$brn" bench --train --device cuda:0 --batch 12 --size 100 --stages 6 --warmup 3 --runs 20 --cache "$cache" --json
fi
if want 3; then
echo "== 3. again in a fresh process: the first step with the cache just written"
timeout 120 "$brn" bench --train --device cuda:0 --batch 12 --size 100 --stages 6 --warmup 3 --runs 20 --cache "$cache" --json
fi
if want 4; then
echo "== 4. loader throughput of the training config on $(nproc) cores"
timeout 60 "$brn" bench --loader .gpu/gpu.json --runs 50
fi
if want 5; then
echo "== 5. GPU inference (issue 13): a 4000x3000 photo at T = 6 (and 4), wgpu and CUDA; PyTorch forward 1024^2"
for f in .gpu/gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done; ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
python3 -c "
import numpy as np
from PIL import Image
y, x = np.mgrid[0:3000, 0:4000]
img = np.stack([(x * 7 + y) % 256, (y * 5) % 256, (x ^ y) % 256], -1).astype(np.uint8)
Image.fromarray(img).save('/tmp/photo.png')
"
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > /tmp/gpu-mem.log &
sampler=$!
for device in gpu cuda:0; do
  for stages in 6 4; do
    start_ns=$(date +%s%N)
    timeout 150 "$brn" derain /tmp/photo.png -o "/tmp/out-$device-$stages" --device "$device" --stages "$stages" 2>&1 | tail -3
    echo "derain 4000x3000 --device $device --stages $stages: $(( ($(date +%s%N) - start_ns) / 1000000 )) ms end to end (decode to PNG written)"
  done
done
kill $sampler 2>/dev/null
echo "peak GPU memory used while deraining: $(sort -n /tmp/gpu-mem.log | tail -1) MiB"
timeout 120 python3 .gpu/torch_brn.py forward --device cuda --size 1024 --stages 6 --runs 5
fi
if want 6; then
slice=$(( $(left) - 60 ))
echo "== 6. training slice: $slice s"
if [ "$slice" -gt 60 ]; then
  if [ -f .gpu/run/latest.json ]; then
    "$brn" train --resume .gpu/run --device cuda:0 --time-limit "$slice"
  else
    "$brn" train --config .gpu/gpu.json -o .gpu/run --device cuda:0 --time-limit "$slice"
  fi
  tail -5 .gpu/run/log.csv
fi
fi
echo "== results"
[ -d .gpu/run ] && tar -cf "$out/run.tar" --exclude=run/cache -C .gpu run
[ -d "$cache" ] && tar -cf "$out/cache.tar" -C .gpu/run cache
ls -l "$out"
echo "== done in $(( $(date +%s) - start )) s"
