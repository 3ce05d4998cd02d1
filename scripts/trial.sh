#!/usr/bin/env bash
# One recipe trial (WEIGHTS.md, "Choosing the recipe"): trains CONFIG (from scratch, or from its
# `init`) for a fixed wall time into runs/trials/NAME, then scores its last checkpoint with
# scripts/val-score.sh (the paper's metric on Set5 and Set14 made rainy with each preset, real
# rain with ground truth and flat fields; never Rain100L), and appends one row to
# runs/trials/results.tsv: name, config, wall time, steps, patches, then PSNR/SSIM per column of
# val-score.sh.
# Usage: scripts/trial.sh CONFIG NAME [TIME, default 20m] [brn train flags, e.g. --mixed-precision]
# (run it on an otherwise idle machine)
# Needs ../shared (BRN_SHARED) and builds `brn` in release mode (or takes BRN_BIN).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
config="$(realpath "$1")"
name="$2"
budget="${3:-20m}"
shift $(($# < 3 ? $# : 3))
export CARGO_TARGET_DIR="${BRN_TARGET_DIR:-$HOME/.cache/brn/target}"
if [ -n "${BRN_BIN:-}" ]; then
  brn="$BRN_BIN" # a `brn` built already (sources may change while the trials run)
else
  (cd "$root" && cargo build --release --locked -q -p brn)
  brn="$CARGO_TARGET_DIR/release/brn"
fi
runs="$root/runs"
out="$runs/trials/$name"
[ -e "$out" ] && { echo "error: $out exists (pick another name)" >&2; exit 1; }
mkdir -p "$runs/trials"
# The config's data folders are relative to the repository root.
(cd "$root" && "$brn" train --config "$config" -o "$out" --time-limit "$budget" "$@") || true
latest="$out/$(sed -n 's/.*"\(step-[0-9]*\)".*/\1/p' "$out/latest.json")"
step="$(sed -n 's/.*"step": *\([0-9]*\).*/\1/p' "$latest/state.json" | head -1)"
batch="$(sed -n 's/.*"batch_size": *\([0-9]*\).*/\1/p' "$latest/state.json" | head -1)"
stages="$(sed -n 's/.*"stages": *\([0-9]*\).*/\1/p' "$latest/state.json" | head -1)"
row="$name	$(basename "$config")${*:+ $*}	$budget	$step	$((step * batch))"
row="$row	$(BRN_BIN="$brn" "$root/scripts/val-score.sh" "$latest/model.safetensors" "$stages" | sed -n 1p)"
if [ ! -f "$runs/trials/results.tsv" ]; then
  header="name	config	time	steps	patches"
  for preset in light heavy varied depth none rendered-light rendered-heavy splash realgt flat heavy-dry depth-dry rendered-heavy-dry; do header="$header	$preset PSNR	$preset SSIM"; done
  echo "$header" > "$runs/trials/results.tsv"
fi
echo "$row" >> "$runs/trials/results.tsv"
echo "$row"
