"""Compare fine-tuning recipes on the cases of bench_learning.py, one variant at a time.

    python benchmarks/bench_recipe.py --cases spine-mr,spine-ct,generated-ct \
        --variants '{"default": {}, "lr2e-3": {"lr": 0.002}, "steps200": {"steps": 200}}'

Each variant is a dict of FinetuneSettings fields over the defaults (held-out folds off: they
do not change the final model). Prints, per case and variant, the mean Dice on the slices that
were not annotated, per class, and on the next generated case where there is one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_learning as bl  # noqa: E402

from napari_fcnseg.core.finetune import FinetuneSettings, finetune  # noqa: E402
from napari_fcnseg.core.store import ModelStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="generated-ct,spine-ct,spine-mr")
    parser.add_argument("--variants", default='{"default": {}}',
                        help="JSON: variant name -> FinetuneSettings overrides")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    variants = json.loads(args.variants)
    start = ModelStore().load("bundled")
    cache = bl.cache_dir(args.cache_dir)
    for name in args.cases.split(","):
        case = bl.load_case(name, cache)
        rest = [z for z in range(len(case.image)) if z not in case.annotated]
        sparse = bl.annotated_only(case.labels, case.annotated)
        for label, overrides in variants.items():
            settings = FinetuneSettings(**{"holdout_folds": 0, **overrides})
            t = time.perf_counter()
            result = finetune(start.net, case.image, sparse, slices=case.annotated,
                              class_names=case.class_names, base_class_names=start.class_names,
                              settings=settings, modality=case.modality)
            seconds = time.perf_counter() - t
            res = bl.run_network(result.net, case, rest, "cpu")
            nxt = bl.mean(res.get("next_dice"))
            per_class = ", ".join(f"{k} {v:.3f}" for k, v in res["dice"].items())
            mean_train = float(np.mean([result.dice_train[case.class_names[c]]
                                        for c in case.scored]))
            print(f"{name:13s} {label:14s} mean {bl.mean(res['dice']):.3f}  next "
                  f"{'-' if nxt is None else f'{nxt:.3f}'}  ({per_class})  {seconds:.0f} s; "
                  f"on the training slices {mean_train:.3f}", flush=True)


if __name__ == "__main__":
    main()
