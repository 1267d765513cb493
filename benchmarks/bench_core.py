"""Core benchmarks: inference speed, volume time, peak memory, fine-tuning time and Dice.

Usage::

    python benchmarks/bench_core.py            # all parts; prints a Markdown table
    python benchmarks/bench_core.py --parts a,b

Parts:
  a  ms per 512x512 slice: the project's inference path vs the same network in plain eager
     PyTorch (channels-first, one slice at a time), side by side in one run
  b  seconds for a 512x512x100 int16 volume, end to end (normalisation included)
  c  peak RSS while segmenting a 512x512x300 int16 volume (measured in a child process)
  d  seconds for a fine-tune round from 3 annotated 256x256 slices (default settings), and the
     Dice before/after on the volume's other slices and on the next case of the same kind;
     for an in-distribution CT volume and for an unseen contrast (inverted MR)
  e  on an NVIDIA GPU (skipped without one): ms per 512x512 slice with float32 and with
     float16 autocast, 8 slices per pass, pinned-memory transfers, and the Dice change
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch

from napari_fcnseg.core.device import configure_threads
from napari_fcnseg.core.finetune import finetune
from napari_fcnseg.core.metrics import dice_per_class
from napari_fcnseg.core.phantoms import CLASS_NAMES, generate_volume
from napari_fcnseg.core.predict import predict
from napari_fcnseg.core.store import ModelStore


def bundled():
    return ModelStore().load("bundled")


def part_a(repeats: int = 5) -> list[tuple[str, str, str]]:
    from napari_fcnseg.core.normalize import normalize
    from napari_fcnseg.core.slices import stack_slices

    net = bundled().net.eval()
    ct = generate_volume("CT", (32, 512, 512), 7).image

    def ours() -> None:
        predict(net, ct, device="cpu")

    def eager() -> None:  # the same network, channels-first, one slice at a time, unfused
        x_all = normalize(ct)
        with torch.no_grad():
            for z in range(len(ct)):
                net(torch.from_numpy(stack_slices(x_all, [z], 1))).argmax(1)

    times = {ours: [], eager: []}
    for run in (ours, eager):
        run()  # warm-up
    for _ in range(repeats):  # interleaved, so both see the same machine load
        for run in (ours, eager):
            t = time.perf_counter()
            run()
            times[run].append((time.perf_counter() - t) / len(ct) * 1000)
    ms_ours, ms_eager = float(np.median(times[ours])), float(np.median(times[eager]))
    return [
        ("a", "ms per 512x512 slice, project inference path (median of 5 x 32 slices)",
         f"{ms_ours:.0f}"),
        ("a", "ms per 512x512 slice, plain eager (channels-first, 1 slice)", f"{ms_eager:.0f}"),
        ("a", "speed-up vs plain eager, same run", f"{ms_eager / ms_ours:.2f}x"),
    ]


def part_b() -> list[tuple[str, str, str]]:
    net = bundled().net
    vol = np.concatenate([generate_volume("CT", (50, 512, 512), s).image for s in (8, 9)])
    predict(net, vol[:4], device="cpu")
    t = time.perf_counter()
    predict(net, vol, device="cpu")
    return [("b", "s for a 512x512x100 int16 volume", f"{time.perf_counter() - t:.1f}")]


CHILD = """
import resource, numpy as np
from napari_fcnseg.core.predict import predict
from napari_fcnseg.core.store import ModelStore
net = ModelStore().load("bundled").net
rng = np.random.default_rng(0)
vol = np.empty((300, 512, 512), np.int16)
for z in range(300):  # filled slice by slice, so making the input costs no extra memory
    vol[z] = rng.integers(-1000, 1000, (512, 512), dtype=np.int16)
vol[:, :100] = -1000
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
labels = predict(net, vol, device="cpu").labels
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(base, peak, vol.nbytes)
"""


def part_c() -> list[tuple[str, str, str]]:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         check=True).stdout.split()
    before, peak, nbytes = (int(v) for v in out)
    extra = peak / 1024 - nbytes / 2**20
    return [
        ("c", "input size, MB (512x512x300 int16)", f"{nbytes / 2**20:.0f}"),
        ("c", "peak RSS while segmenting it, MB", f"{peak / 1024:.0f}"),
        ("c", "peak RSS minus input size, MB (incl. python + torch)", f"{extra:.0f}"),
        ("c", "RSS before segmenting (python + torch + input), MB", f"{before / 1024:.0f}"),
    ]


def _other_slices_dice(net, image, labels, annotated) -> dict[str, float]:
    rest = [z for z in range(len(image)) if z not in annotated]
    pred = predict(net, image, slices=rest, device="cpu").labels
    scores = dice_per_class(pred[rest], labels[rest], len(CLASS_NAMES))
    return {CLASS_NAMES[c]: round(v, 3) for c, v in scores.items()}


def part_d() -> list[tuple[str, str, str]]:
    model = bundled()
    rows = []

    def inverted_mr(seed: int):
        mr = generate_volume("MR", (24, 256, 256), seed)
        return (mr.image.max() - mr.image).astype(np.float32), mr.labels

    ct = [generate_volume("CT", (24, 256, 256), s) for s in (200_003, 200_004)]
    cases = [("in-distribution CT", (ct[0].image, ct[0].labels), (ct[1].image, ct[1].labels)),
             ("unseen contrast (inverted MR)", inverted_mr(200_002), inverted_mr(200_005))]
    for label, (image, labels), (next_image, next_labels) in cases:
        has = [z for z in range(len(labels)) if (labels[z] == 1).any()]
        annotated = [has[len(has) // 4], has[len(has) // 2], has[3 * len(has) // 4]]
        before = _other_slices_dice(model.net, image, labels, annotated)
        next_before = _other_slices_dice(model.net, next_image, next_labels, [])
        t = time.perf_counter()
        res = finetune(model.net, image, labels, slices=annotated, class_names=CLASS_NAMES,
                       device="cpu")
        seconds = time.perf_counter() - t
        after = _other_slices_dice(res.net, image, labels, annotated)
        next_after = _other_slices_dice(res.net, next_image, next_labels, [])

        def pair(a: dict, b: dict) -> str:
            return (f"{a['organ']:.3f} / {a['lesion']:.3f} -> "
                    f"{b['organ']:.3f} / {b['lesion']:.3f}")

        rows += [
            ("d", f"{label}: s for a fine-tune round, 3 annotated 256x256 slices",
             f"{seconds:.0f}"),
            ("d", f"{label}: Dice organ / lesion on the 21 other slices, before -> after",
             pair(before, after)),
            ("d", f"{label}: Dice organ / lesion on the next case (unseen volume), "
             "before -> after", pair(next_before, next_after)),
        ]
    return rows


def part_e(repeats: int = 5) -> list[tuple[str, str, str]]:
    """GPU: float32 against float16 autocast, 8 slices per pass, pinned transfers."""
    if not torch.cuda.is_available():
        return [("e", "GPU rows", "skipped: no CUDA device on this machine")]
    net = bundled().net.eval()
    ph = generate_volume("CT", (64, 512, 512), 100_600)  # a held-out seed
    dev = torch.device("cuda")
    times: dict[str, list[float]] = {"float32": [], "float16": []}
    labels = {}
    for precision in times:  # warm-up (cuDNN autotuning), and the labels to compare
        labels[precision] = predict(net, ph.image, device=dev, batch_size=8,
                                    precision=precision).labels
    for _ in range(repeats):
        for precision in times:
            torch.cuda.synchronize()
            t = time.perf_counter()
            predict(net, ph.image, device=dev, batch_size=8, precision=precision)
            torch.cuda.synchronize()
            times[precision].append((time.perf_counter() - t) / len(ph.image) * 1000)
    ms = {k: float(np.median(v)) for k, v in times.items()}
    n = len(CLASS_NAMES)
    d32 = dice_per_class(labels["float32"], ph.labels, n)
    d16 = dice_per_class(labels["float16"], ph.labels, n)
    change = max(abs(d16[c] - d32[c]) for c in range(1, n))
    name = torch.cuda.get_device_name(0)
    return [
        ("e", f"ms per 512x512 slice on {name}, float32, 8 per pass", f"{ms['float32']:.1f}"),
        ("e", f"ms per 512x512 slice on {name}, float16 autocast", f"{ms['float16']:.1f}"),
        ("e", "float16 speed-up, same run", f"{ms['float32'] / ms['float16']:.2f}x"),
        ("e", "largest Dice change per class, float16 vs float32 (held-out CT)",
         f"{change:.4f}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="a,b,c,d,e")
    args = parser.parse_args()
    threads = configure_threads()
    parts = {"a": part_a, "b": part_b, "c": part_c, "d": part_d, "e": part_e}
    rows = []
    for key in args.parts.split(","):
        rows += parts[key]()
        for row in rows[-4:]:
            print(" | ".join(row), file=sys.stderr, flush=True)
    print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{threads} torch threads, torch {torch.__version__}, Python {platform.python_version()}")
    print("\n| part | measure | value |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    os.makedirs("benchmarks/results", exist_ok=True)
    with open("benchmarks/results/core.json", "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
