#!/usr/bin/env bash
# One recipe trial (WEIGHTS.md, "Choosing the recipe"): trains CONFIG from scratch for a fixed
# wall time into runs/trials/NAME, then scores its last checkpoint with the paper's metric on
# synthetic validation pairs of every rain preset (Set5 + Set14 made rainy with fixed seeds,
# made once into runs/val/PRESET; never Rain100L), and appends one row to
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

for i in "${!presets[@]}"; do
  preset="${presets[$i]}"
  val="$runs/val/$preset"
  [ -d "$val/rainy" ] && continue
  for set in set5 set14; do
    "$brn" synth --clean "$shared/data/clean/$set" -o "$val" --preset "$preset" --seed $((100 + i))
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
  score="$("$brn" eval --weights "$latest/model.safetensors" --stages "$stages" --data "$runs/val/$preset" --json)"
  psnr="$(python3 -c 'import json,sys; m=json.load(sys.stdin)["mean"]; print(f"{m[\"psnr\"]:.2f}\t{m[\"ssim\"]:.4f}")' <<<"$score")"
  row="$row	$psnr"
done
if [ ! -f "$runs/trials/results.tsv" ]; then
  header="name	config	time	steps	patches"
  for preset in "${presets[@]}"; do header="$header	$preset PSNR	$preset SSIM"; done
  echo "$header" > "$runs/trials/results.tsv"
fi
echo "$row" >> "$runs/trials/results.tsv"
echo "$row"
