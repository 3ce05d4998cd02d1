#!/usr/bin/env python3
"""Blends two checkpoints of one architecture, tensor by tensor: (1 - t) * A + t * B.

A lab tool (the weight-space interpolation of a fine-tune and its start, Wortsman et al.,
"Robust fine-tuning of zero-shot models", CVPR 2022): when B was fine-tuned from A, the
checkpoints in between trade what B learned against what A knew, at no training cost.

Usage: scripts/blend-weights.py A.safetensors B.safetensors T OUT.safetensors
Both must be float32 safetensors records with the same tensors (names, shapes) and the same
model config in their metadata; OUT keeps A's metadata. Standard library only.
"""
import json
import os
import struct
import sys
from array import array


def read(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        sys.exit(f"error: cannot read {path}: {e.strerror}")
    if len(data) < 8:
        sys.exit(f"error: {path} is not a safetensors record (too short)")
    (size,) = struct.unpack("<Q", data[:8])
    if 8 + size > len(data):
        sys.exit(f"error: {path} is not a safetensors record (its header runs past the end)")
    header = json.loads(data[8 : 8 + size])
    return header, data[8 + size :]


def main():
    if len(sys.argv) != 5:
        sys.exit(next(line for line in __doc__.splitlines() if line.startswith("Usage:")))
    path_a, path_b, t, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    try:
        t = float(t)
    except ValueError:
        sys.exit(f"error: T must be a number in [0, 1], not {t!r}")
    if not 0.0 <= t <= 1.0:
        sys.exit(f"error: T must be in [0, 1], not {t}")
    head_a, body_a = read(path_a)
    head_b, body_b = read(path_b)
    meta_a = head_a.pop("__metadata__", {})
    meta_b = head_b.pop("__metadata__", {})
    if meta_a.get("brn_config") != meta_b.get("brn_config"):
        sys.exit("error: the two records hold different model configs")
    if sorted(head_a) != sorted(head_b):
        sys.exit("error: the two records hold different tensors")
    header = {"__metadata__": meta_a}
    body = bytearray()
    for name in sorted(head_a, key=lambda n: head_a[n]["data_offsets"][0]):
        a, b = head_a[name], head_b[name]
        if a["dtype"] != "F32" or b["dtype"] != "F32" or a["shape"] != b["shape"]:
            sys.exit(f"error: {name}: both must be F32 of one shape ({a['dtype']} {a['shape']}, "
                     f"{b['dtype']} {b['shape']})")
        xa = array("f", body_a[a["data_offsets"][0] : a["data_offsets"][1]])
        xb = array("f", body_b[b["data_offsets"][0] : b["data_offsets"][1]])
        blended = array("f", [(1.0 - t) * p + t * q for p, q in zip(xa, xb)])
        if sys.byteorder != "little":
            blended.byteswap()
        header[name] = {"dtype": "F32", "shape": a["shape"],
                        "data_offsets": [len(body), len(body) + len(blended) * 4]}
        body += blended.tobytes()
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = out + ".part"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + body)
    os.replace(tmp, out)  # no half-written record under OUT's name


if __name__ == "__main__":
    main()
