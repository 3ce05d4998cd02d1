#!/usr/bin/env bash
# Scores weights on the recipe-validation sets (WEIGHTS.md, "Choosing the recipe"): Set5 and Set14
# made rainy with each preset at fixed seeds (made once into runs/val/PRESET-SET; never Rain100L),
# with the paper's metric, pooled per preset over the images of both sets.
# Usage: scripts/val-score.sh WEIGHTS STAGES
# Prints two tab-separated lines: the weights' PSNR and SSIM per preset (light, heavy, varied,
# depth, none), then the rainy inputs' own scores in the same order (what deraining starts from).
# `none` is the clean photos as their own input: the weights' score there is how far they move a
# rain-free photo (its input scores inf / 1).
# Needs ../shared (BRN_SHARED) and a release `brn` (built here, or BRN_BIN).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
weights="$(realpath "$1")"
stages="$2"
shared="${BRN_SHARED:-$root/../shared}"
export CARGO_TARGET_DIR="${BRN_TARGET_DIR:-$HOME/.cache/brn/target}"
if [ -n "${BRN_BIN:-}" ]; then
  brn="$BRN_BIN" # a `brn` built already (e.g. while cargo builds something else)
else
  (cd "$root" && cargo build --release --locked -q -p trainer)
  brn="$CARGO_TARGET_DIR/release/brn"
fi
presets=(light heavy varied depth none)
sets=(set5 set14)
reports=()
for i in "${!presets[@]}"; do
  for set in "${sets[@]}"; do
    val="$root/runs/val/${presets[$i]}-$set"
    [ -d "$val/rainy" ] || "$brn" synth --clean "$shared/data/clean/$set" -o "$val" \
      --preset "${presets[$i]}" --seed $((100 + i)) >&2
    reports+=("$("$brn" eval --weights "$weights" --stages "$stages" --data "$val" --json)")
  done
done
python3 - "${#sets[@]}" "${reports[@]}" <<'PY'
import json, sys
per_preset = int(sys.argv[1])
reports = [json.loads(r) for r in sys.argv[2:]]
for key in ("", "input_"):
    cells = []
    for p in range(0, len(reports), per_preset):
        images = [i for r in reports[p:p + per_preset] for i in r["images"]]
        n = len(images)
        # An image equal to its reference has an infinite PSNR (JSON null).
        psnr = [i[key + "psnr"] for i in images]
        psnr = float("inf") if None in psnr else sum(psnr) / n
        cells.append("%.2f\t%.4f" % (psnr, sum(i[key + "ssim"] for i in images) / n))
    print("\t".join(cells))
PY
