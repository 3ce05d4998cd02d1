#!/usr/bin/env bash
# One recipe trial (WEIGHTS.md, "Choosing the recipe"): trains CONFIG from scratch for a fixed
# wall time into runs/trials/NAME, then scores its last checkpoint with the paper's metric on
# synthetic validation pairs of every rain preset (Set5 and Set14 made rainy with fixed seeds,
# made once into runs/val/PRESET-SET; never Rain100L), and appends one row to
# runs/trials/results.tsv: name, config, wall time, steps, patches, then PSNR/SSIM per preset.
# Usage: scripts/trial.sh CONFIG NAME [TIME, default 20m]   (run it on an otherwise idle machine)
# Needs ../shared (BRN_SHARED) and builds `brn` in release mode.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
config="$(realpath "$1")"
name="$2"
budget="${3:-20m}"
shared="${BRN_SHARED:-$root/../shared}"
export CARGO_TARGET_DIR="${BRN_TARGET_DIR:-$HOME/.cache/brn/target}"
(cd "$root" && cargo build --release --locked -q -p trainer)
brn="$CARGO_TARGET_DIR/release/brn"
runs="$root/runs"
presets=(light heavy varied depth)

sets=(set5 set14)
for i in "${!presets[@]}"; do
  for set in "${sets[@]}"; do
    val="$runs/val/${presets[$i]}-$set"
    [ -d "$val/rainy" ] || "$brn" synth --clean "$shared/data/clean/$set" -o "$val" \
      --preset "${presets[$i]}" --seed $((100 + i))
  done
done

out="$runs/trials/$name"
[ -e "$out" ] && { echo "error: $out exists (pick another name)" >&2; exit 1; }
mkdir -p "$runs/trials"
# The config's data folders are relative to the repository root.
(cd "$root" && "$brn" train --config "$config" -o "$out" --time-limit "$budget") || true
latest="$out/$(sed -n 's/.*"\(step-[0-9]*\)".*/\1/p' "$out/latest.json")"
step="$(sed -n 's/.*"step": *\([0-9]*\).*/\1/p' "$latest/state.json" | head -1)"
batch="$(sed -n 's/.*"batch_size": *\([0-9]*\).*/\1/p' "$latest/state.json" | head -1)"
stages="$(sed -n 's/.*"stages": *\([0-9]*\).*/\1/p' "$latest/state.json" | head -1)"
row="$name	$(basename "$config")	$budget	$step	$((step * batch))"
for preset in "${presets[@]}"; do
  # Mean over the images of both sets.
  scores=()
  for set in "${sets[@]}"; do
    scores+=("$("$brn" eval --weights "$latest/model.safetensors" --stages "$stages" \
      --data "$runs/val/$preset-$set" --json)")
  done
  row="$row	$(python3 -c '
import json, sys
images = [i for report in sys.argv[1:] for i in json.loads(report)["images"]]
print("%.2f\t%.4f" % (sum(i["psnr"] for i in images) / len(images), sum(i["ssim"] for i in images) / len(images)))' "${scores[@]}")"
done
if [ ! -f "$runs/trials/results.tsv" ]; then
  header="name	config	time	steps	patches"
  for preset in "${presets[@]}"; do header="$header	$preset PSNR	$preset SSIM"; done
  echo "$header" > "$runs/trials/results.tsv"
fi
echo "$row" >> "$runs/trials/results.tsv"
echo "$row"
