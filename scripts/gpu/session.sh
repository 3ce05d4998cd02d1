#!/usr/bin/env bash
# One GPU session (issue 10/11 measurements and a training slice), run on the lent machine
# with carry [".gpu"] (see scripts/gpu/pack.sh). Everything it measures goes to $OUT:
# session.log (card, driver, every figure), run.tar (the run folder without its cache, to
# continue anywhere) and cache.tar (compiled kernels and autotune results for this GPU model).
# SECONDS_LEFT (default 560) bounds the whole script, so the call returns in time.
set -uo pipefail
start=$(date +%s)
budget="${SECONDS_LEFT:-560}"
left() { echo $(( budget - ($(date +%s) - start) )); }
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

echo "== 1. PyTorch anchor: train step, batch 12 of 100x100, T = 6 (fp32, then bf16 autocast)"
timeout 120 python3 .gpu/torch_brn.py train --device cuda --batch 12 --patch 100 --stages 6 --runs 20 --warmup 3
timeout 120 python3 .gpu/torch_brn.py train --device cuda --batch 12 --patch 100 --stages 6 --runs 20 --warmup 3 --amp

had_cache=no; [ -d "$cache/autotune" ] && had_cache=yes
echo "== 2. brn bench --train, same shape (kernel cache present before: $had_cache)"
timeout 330 "$brn" bench --train --device cuda:0 --batch 12 --size 100 --stages 6 --warmup 3 --runs 20 --cache "$cache" --json
echo "== 3. again in a fresh process: the first step with the cache just written"
timeout 120 "$brn" bench --train --device cuda:0 --batch 12 --size 100 --stages 6 --warmup 3 --runs 20 --cache "$cache" --json
echo "== 4. loader throughput of the training config on $(nproc) cores"
timeout 60 "$brn" bench --loader .gpu/gpu.json --runs 50

slice=$(( $(left) - 60 ))
echo "== 5. training slice: $slice s"
if [ "$slice" -gt 60 ]; then
  if [ -f .gpu/run/latest.json ]; then
    "$brn" train --resume .gpu/run --device cuda:0 --time-limit "$slice"
  else
    "$brn" train --config .gpu/gpu.json -o .gpu/run --device cuda:0 --time-limit "$slice"
  fi
  tail -5 .gpu/run/log.csv
fi
echo "== results"
tar -cf "$out/run.tar" --exclude=run/cache -C .gpu run
[ -d "$cache" ] && tar -cf "$out/cache.tar" -C .gpu/run cache
ls -l "$out"
echo "== done in $(( $(date +%s) - start )) s"
