#!/usr/bin/env bash
# Where a CUDA training step's time goes (host-bound or GPU-bound), wgpu's Vulkan driver, and
# inference on a 1024^2 image; run on a warm machine after session.sh (same /tmp/brn, /tmp/brn-run).
set -uo pipefail
out="${OUT:-/tmp/brn-out}"; mkdir -p "$out"
exec > >(tee -a "$out/diag.log") 2>&1
export CUDA_PATH=/usr/local/cuda LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
brn=/tmp/brn; [ -x "$brn" ] || { xz -dc .gpu/brn.xz > "$brn" && chmod +x "$brn"; }
cache=/tmp/brn-run/cache
echo "== Vulkan: ICD files and loader"
find / -xdev \( -name 'nvidia_icd*.json' -o -name 'libGLX_nvidia.so*' -o -name 'libvulkan.so*' \) 2>/dev/null | head
ls /etc/vulkan/icd.d /usr/share/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>&1 | head
echo "== bench --train batch 12 (warm cache) with GPU utilisation and host CPU time"
nvidia-smi dmon -s u -d 1 > /tmp/dmon.log 2>&1 & dm=$!
/usr/bin/time -f "wall %e s, user %U s, sys %S s" timeout 60 "$brn" bench --train --device cuda:0 --batch 12 --size 100 --stages 6 --warmup 3 --runs 30 --cache "$cache" --json
kill $dm; cat /tmp/dmon.log
echo "== batch 48 of 100x100 (overhead-bound if close to batch 12's time)"
timeout 90 "$brn" bench --train --device cuda:0 --batch 48 --size 100 --stages 6 --warmup 2 --runs 10 --cache "$cache" --json; echo "exit $?"
echo "== derain 1024x1024 T=6, twice (the second shows what is cached between processes)"
python3 -c "
from PIL import Image; Image.open('/tmp/photo.png').crop((0,0,1024,1024)).save('/tmp/p1024.png')" 2>/dev/null || python3 -c "
import numpy as np; from PIL import Image
y, x = np.mgrid[0:1024, 0:1024]; Image.fromarray(np.stack([(x*7+y)%256,(y*5)%256,(x^y)%256],-1).astype(np.uint8)).save('/tmp/p1024.png')"
for i in 1 2; do /usr/bin/time -f "derain 1024^2 cuda:0 run $i: wall %e s, user %U s" timeout 50 "$brn" derain /tmp/p1024.png -o /tmp/o1024 --device cuda:0 --stages 6; done
ls -d ~/.cache/cubecl* /tmp/*cubecl* ./target 2>/dev/null
echo "== done"
