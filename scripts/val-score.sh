#!/usr/bin/env bash
# Scores weights on the recipe-validation sets (WEIGHTS.md, "Choosing the recipe"), never Rain100L:
# - Set5 and Set14 made rainy with each preset at fixed seeds (made once into runs/val/PRESET-SET),
#   pooled per preset over the images of both sets: light, heavy, varied, depth, none (the clean
#   photos as their own input: how far the weights move a rain-free photo; its input scores
#   inf / 1), rendered-light, rendered-heavy (Garg and Nayar's streak layers), splash (streaks
#   over a field of splashes on the ground);
# - realgt: real rain with ground truth ($BRN_SHARED/data/realgt-dev, all scenes pooled);
# - flat: plain fields of colour, with and without a faint grain, as their own input (made once
#   into runs/val/flat): how far the weights move a textureless area (a wall, a sky);
# - heavy-dry, depth-dry, rendered-heavy-dry: those presets at their seeds without the veil of
#   accumulation and the fog (`brn synth --veil 0`; heavy's and rendered-heavy's streaks are the
#   same as with the veil, depth's are drawn without its depth map): streak removal alone, where
#   the veiled columns also score taking a veil off.
# Usage: scripts/val-score.sh WEIGHTS STAGES
# Prints two tab-separated lines of PSNR and SSIM per column, in the order above: the weights'
# scores, then the inputs' own (what deraining starts from).
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
  (cd "$root" && cargo build --release --locked -q -p brn)
  brn="$CARGO_TARGET_DIR/release/brn"
fi
presets=(light heavy varied depth none rendered-light rendered-heavy splash)
sets=(set5 set14)
score() { "$brn" eval --weights "$weights" --stages "$stages" --data "$1" --json; }
reports=()
groups=()
# One column of Set5 + Set14 made rainy: PRESET SEED NAME [synth flags].
rainy_sets() {
  local preset="$1" seed="$2" name="$3" set val
  shift 3
  for set in "${sets[@]}"; do
    val="$root/runs/val/$name-$set"
    [ -d "$val/rainy" ] || "$brn" synth --clean "$shared/data/clean/$set" -o "$val" \
      --preset "$preset" --seed "$seed" --streaks "$shared/data/streaks/garg-nayar" "$@" >&2
    reports+=("$(score "$val")")
  done
  groups+=("${#sets[@]}")
}
for i in "${!presets[@]}"; do
  rainy_sets "${presets[$i]}" $((100 + i)) "${presets[$i]}"
done
reports+=("$(score "$shared/data/realgt-dev")")
groups+=(1)
flat="$root/runs/val/flat"
if [ ! -d "$flat/rainy" ]; then
  # Plain 256x256 fields: greys and colours (a brick wall's, a sky's), some with a grain of
  # sigma 1 level; written by Python's standard library alone, with a fixed seed.
  python3 - "$flat/clean" <<'PY'
import os, random, struct, sys, zlib
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = random.Random(7)
fields = [(40, 40, 40, 0), (120, 120, 120, 0), (200, 200, 200, 0), (109, 92, 92, 0),
          (150, 180, 215, 0), (120, 120, 120, 1), (109, 92, 92, 1), (60, 90, 50, 1)]
def png(path, w, h, rows):
    raw = b"".join(b"\0" + bytes(r) for r in rows)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
for k, (r, g, b, grain) in enumerate(fields):
    rows = []
    for y in range(256):
        row = []
        for x in range(256):
            for v in (r, g, b):
                row.append(min(255, max(0, round(v + (rng.gauss(0, grain) if grain else 0)))))
        rows.append(row)
    png(os.path.join(out, "flat-%02d.png" % k), 256, 256, rows)
PY
  mkdir -p "$flat/rainy" && cp "$flat/clean/"*.png "$flat/rainy/"
fi
reports+=("$(score "$flat")")
groups+=(1)
# Heavy, depth and rendered-heavy without their veil and fog, at their seeds above.
for dry in heavy depth rendered-heavy; do
  for i in "${!presets[@]}"; do
    if [ "${presets[$i]}" = "$dry" ]; then rainy_sets "$dry" $((100 + i)) "$dry-dry" --veil 0; fi
  done
done
python3 - "${groups[*]}" "${reports[@]}" <<'PY'
import json, sys
groups = [int(g) for g in sys.argv[1].split()]
reports = [json.loads(r) for r in sys.argv[2:]]
for key in ("", "input_"):
    cells, start = [], 0
    for size in groups:
        images = [i for r in reports[start:start + size] for i in r["images"]]
        start += size
        n = len(images)
        # An image equal to its reference has an infinite PSNR (JSON null).
        psnr = [i[key + "psnr"] for i in images]
        psnr = float("inf") if None in psnr else sum(psnr) / n
        cells.append("%.2f\t%.4f" % (psnr, sum(i[key + "ssim"] for i in images) / n))
    print("\t".join(cells))
PY
