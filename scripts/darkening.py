#!/usr/bin/env python3
"""How much derained photos darken their rainy inputs: a check on real rain without ground truth.

A lab tool (issue 32): rain only ever adds light, so deraining may lower a photo's brightness,
but a network that takes a veil off anything bright and flat turns bright texture (a wall, the
splashing road of a downpour) into dark blotches. Per photo it prints the mean change of luma
(Y = 0.299 R + 0.587 G + 0.114 B, output minus input, in levels of 255) and the share of pixels
more than 30 levels darker; then the mean of both over the photos; and, with --box, the same
inside one rectangle of one photo, columns X0 to X1 and rows Y0 to Y1, the ends excluded (e.g.
realrain's Image5 road: --box Image5 172 257 419 329).

Usage: scripts/darkening.py INPUTS OUTPUTS [--box NAME X0 Y0 X1 Y1]
INPUTS: the rainy photos (e.g. ../shared/data/realrain); OUTPUTS: `brn derain INPUTS -o OUTPUTS`
(each output named as its input, any extension). Needs Pillow and NumPy (`pip install pillow
numpy`, e.g. into the venv of ../shared/bench/torch_brn.py).
"""
import os
import sys

try:
    import numpy as np
    from PIL import Image
except ImportError as e:
    sys.exit(f"error: {e.name} is missing: pip install pillow numpy")

DARKER = 30


def luma(path):
    try:
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    except OSError as e:
        sys.exit(f"error: cannot read {path}: {e}")
    return rgb @ np.array([0.299, 0.587, 0.114])


def change(before, after):
    d = after - before
    return d.mean(), 100.0 * (d < -DARKER).mean()


def main(argv):
    box = None
    if "--box" in argv:
        i = argv.index("--box")
        try:
            box = (argv[i + 1], *map(int, argv[i + 2 : i + 6]))
        except (IndexError, ValueError):
            box = ()
        if len(box) != 5 or not (0 <= box[1] < box[3] and 0 <= box[2] < box[4]):
            sys.exit("error: --box takes a photo's name and X0 Y0 X1 Y1 (0 <= X0 < X1, 0 <= Y0 < Y1)")
        argv = argv[:i] + argv[i + 6 :]
    if len(argv) != 2:
        sys.exit(__doc__.split("\n\n")[2])
    inputs, outputs = argv
    try:
        names = sorted(n for n in os.listdir(inputs) if not n.startswith("."))
        written = {os.path.splitext(n)[0]: n for n in os.listdir(outputs)}
    except OSError as e:
        sys.exit(f"error: {e.filename}: {e.strerror}")
    means, shares = [], []
    print(f"photo\tmean dY\t% > {DARKER} darker")
    for name in names:
        stem = os.path.splitext(name)[0]
        if stem not in written:
            sys.exit(f"error: no output for {name} in {outputs}")
        before = luma(os.path.join(inputs, name))
        after = luma(os.path.join(outputs, written[stem]))
        if before.shape != after.shape:
            sys.exit(f"error: {name}: the output is {after.shape}, the input {before.shape}")
        mean, share = change(before, after)
        means.append(mean)
        shares.append(share)
        print(f"{stem}\t{mean:.1f}\t{share:.1f}")
        if box and box[0] == stem:
            x0, y0, x1, y1 = box[1:]
            if x1 > before.shape[1] or y1 > before.shape[0]:
                sys.exit(f"error: --box runs past {name}'s {before.shape[1]}x{before.shape[0]} pixels")
            region = (slice(y0, y1), slice(x0, x1))
            mean, share = change(before[region], after[region])
            print(f"{stem} [{x0}:{x1}, {y0}:{y1}]\t{mean:.1f}\t{share:.1f}")
    if means:
        print(f"all {len(means)}\t{np.mean(means):.1f}\t{np.mean(shares):.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
