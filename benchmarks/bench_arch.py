"""The two built-in architectures side by side, in one run: the U-Net ("bundled") and the FCN.

For each model (the built-in ones by default, or ``--models a,b``):

* ms per 512 x 512 slice through the project's inference path
  (:func:`napari_fcnseg.core.predict.predict`) and for the same network in plain eager PyTorch
  (channels-first, one slice at a time, unfused), interleaved so both see the same load;
* GFLOP per 512 x 512 slice, counted by ``torch.utils.flop_counter.FlopCounterMode``
  (multiply-add = 2 FLOP), and the parameter count;
* peak RSS while segmenting a 512 x 512 x 100 int16 volume, in a child process per model;
* pooled Dice per class on held-out generated volumes (seeds from 100000, which no training
  used; half CT-like, half MR-like, 256 and 512 in-plane);
* with ``--cases``: the learning benchmark (``bench_learning.py``) on those cases, each model
  fine-tuned from the same annotated slices with the same default settings, Dice on the other
  slices (and on the next case for the generated ones), beside the random forest.

Usage::

    python benchmarks/bench_arch.py                                   # speed, memory, Dice
    python benchmarks/bench_arch.py --cases spine-ct,spine-mr,breast1  # + learning
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_fcnseg.core.device import configure_threads
from napari_fcnseg.core.finetune import FinetuneSettings
from napari_fcnseg.core.normalize import normalize
from napari_fcnseg.core.phantoms import CLASS_NAMES, generate_volume
from napari_fcnseg.core.predict import predict
from napari_fcnseg.core.slices import stack_slices
from napari_fcnseg.core.store import ModelStore

HELD_OUT_SEED = 100_000

CHILD = """
import resource, sys, numpy as np
from napari_fcnseg.core.predict import predict
from napari_fcnseg.core.store import ModelStore
net = ModelStore().load(sys.argv[1]).net
rng = np.random.default_rng(0)
vol = np.empty((100, 512, 512), np.int16)
for z in range(100):
    vol[z] = rng.integers(-1000, 1000, (512, 512), dtype=np.int16)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
predict(net, vol, device="cpu")
print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def speed(nets: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Median ms per 512 x 512 slice, (project path, plain eager), per model."""
    ct = generate_volume("CT", (16, 512, 512), 7).image
    x_all = normalize(ct)

    def ours(net) -> None:
        predict(net, ct, device="cpu")

    def eager(net) -> None:
        with torch.no_grad():
            for z in range(len(ct)):
                net(torch.from_numpy(stack_slices(x_all, [z], net.config.context))).argmax(1)

    times = {(name, run): [] for name in nets for run in (ours, eager)}
    for name, run in times:
        run(nets[name])  # warm-up
    for _ in range(repeats):  # interleaved: every model and path sees the same machine load
        for name, run in times:
            t = time.perf_counter()
            run(nets[name])
            times[name, run].append((time.perf_counter() - t) / len(ct) * 1000)
    return {name: (float(np.median(times[name, ours])), float(np.median(times[name, eager])))
            for name in nets}


def gflop(net) -> float:
    """GFLOP of one 512 x 512 slice (multiply-add counted as 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, net.config.in_channels, 512, 512)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x)
    return counter.get_total_flops() / 1e9


def peak_rss_mb(name: str) -> tuple[float, float]:
    """(RSS before, peak RSS) in MB while segmenting 512 x 512 x 100 int16, in a child."""
    out = subprocess.run([sys.executable, "-c", CHILD, name], capture_output=True, text=True,
                         check=True).stdout.split()
    before, peak = (int(v) / 1024 for v in out)
    return before, peak


def heldout_dice(net, volumes: int) -> dict[str, float]:
    """Pooled Dice per foreground class on held-out generated volumes."""
    inter = np.zeros(len(CLASS_NAMES))
    total = np.zeros(len(CLASS_NAMES))
    for i in range(volumes):
        modality = "CT" if i % 2 == 0 else "MR"
        shape = (16, 512, 512) if i % 4 >= 2 else (16, 256, 256)
        ph = generate_volume(modality, shape, HELD_OUT_SEED + i)
        pred = predict(net, ph.image, device="cpu").labels
        for c in range(1, len(CLASS_NAMES)):
            p, r = pred == c, ph.labels == c
            inter[c] += 2 * np.logical_and(p, r).sum()
            total[c] += p.sum() + r.sum()
    return {CLASS_NAMES[c]: float(inter[c] / max(total[c], 1)) for c in range(1, len(CLASS_NAMES))}


def learning(models: dict, cases: list[str], steps: int | None) -> list[tuple]:
    """Fine-tune every model from the same slices of each case; Dice on the other slices."""
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_learning as bl

    cache = Path(os.environ.get(bl.CACHE_ENV) or bl.DEFAULT_CACHE).expanduser()
    settings = FinetuneSettings(holdout_folds=0, **({"steps": steps} if steps else {}))
    rows = []
    for name in cases:
        case = bl.load_case(name, cache)
        forest_done = False
        for model_name, model in models.items():
            for r in bl.run_case(case, model, settings, "cpu", 200_000):
                if r["method"] == "forest" and forest_done:
                    continue
                forest_done |= r["method"] == "forest"
                method = model_name if r["method"] == "fine-tuned" else (
                    "forest" if r["method"] == "forest" else f"{model_name}, unchanged")
                rows.append((name, method, bl.mean(r["dice"]), bl.mean(r.get("next_dice")),
                             r["train_s"], len(case.annotated)))
    return rows


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bundled,fcn")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--volumes", type=int, default=8, help="held-out generated volumes")
    parser.add_argument("--cases", default="", help="learning benchmark cases, e.g. spine-ct")
    parser.add_argument("--steps", type=int, default=None, help="fine-tune steps (default: "
                        "FinetuneSettings)")
    args = parser.parse_args()
    threads = configure_threads()
    store = ModelStore()
    models = {name: store.load(name) for name in args.models.split(",")}
    nets = {name: m.net for name, m in models.items()}

    ms = speed(nets, args.repeats)
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{threads} torch threads, torch {torch.__version__}")
    print("\n| | " + " | ".join(nets) + " |\n|---|" + "---|" * len(nets))
    rows = [
        ("architecture", lambda n: nets[n].config.arch),
        ("parameters", lambda n: f"{sum(p.numel() for p in nets[n].parameters()):,}"),
        ("GFLOP per 512x512 slice", lambda n: f"{gflop(nets[n]):.2f}"),
        ("ms per 512x512 slice, project path", lambda n: f"{ms[n][0]:.0f}"),
        ("ms per 512x512 slice, plain eager", lambda n: f"{ms[n][1]:.0f}"),
        ("peak RSS segmenting 512x512x100 int16, MB (before: python+torch+input)",
         lambda n: "{1:.0f} ({0:.0f})".format(*peak_rss_mb(n))),
    ]
    for label, cell in rows:
        print(f"| {label} | " + " | ".join(cell(n) for n in nets) + " |", flush=True)
    dice = {n: heldout_dice(nets[n], args.volumes) for n in nets}
    for c in CLASS_NAMES[1:]:
        print(f"| Dice {c}, {args.volumes} held-out generated volumes | "
              + " | ".join(f"{dice[n][c]:.3f}" for n in nets) + " |", flush=True)
    if args.cases:
        print("\n| case | method | annotated slices | mean Dice, other slices | next case "
              "| train s |\n|---|---|---|---|---|---|")
        for case, method, d, nd, train_s, k in learning(models, args.cases.split(","),
                                                         args.steps):
            print(f"| {case} | {method} | {k} | {_fmt(d)} | {_fmt(nd)} | {train_s:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
