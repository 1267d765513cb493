"""How long the product's default fine-tuning round takes on 512 x 512 slices.

    python benchmarks/bench_round.py                 # Markdown table
    python benchmarks/bench_round.py --no-heldout    # the final model only
    python benchmarks/bench_round.py --precisions auto   # the default precision only

A round is timed as the widget and ``napari-fcnseg finetune`` run it: default
:class:`~napari_fcnseg.core.finetune.FinetuneSettings` (steps and rates by task, the held-out
check on), from the bundled model, with the package's thread count
(``$NAPARI_FCNSEG_THREADS`` or all cores). Four rounds:

* ``lung1`` (the pyradiomics CT of bench_learning.py, 512 x 512, 2 nodule slices + 1 reviewed
  empty slice), once as a correction (the nodule labelled as the model's own "lesion") and once
  as a class the model does not know ("nodule");
* a generated CT of 8 x 512 x 512 (:func:`~napari_fcnseg.core.phantoms.generate_volume`, seed
  300004), 5 annotated slices, as a correction (organ / lesion) and with both classes renamed
  ("liver" / "tumour"), so the round learns them as new classes.

With the held-out check, the time until the model is ready (saved and usable in the widget,
before the check) is given in brackets. Each round runs once per training precision
(``--precisions``, default float32 then the default "auto", which is bfloat16 on CPUs that
compute it natively), side by side, so their ratio is measured in one run on the same machine.
Only the time and the number of optimiser steps are reported; Dice is bench_learning.py's job
(bench_recipe.py compares precisions).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_learning as bl  # noqa: E402

from napari_fcnseg.core.device import configure_threads, training_dtype  # noqa: E402
from napari_fcnseg.core.finetune import FinetuneSettings, finetune_iter  # noqa: E402
from napari_fcnseg.core.phantoms import CLASS_NAMES, generate_volume  # noqa: E402
from napari_fcnseg.core.progress import run_to_completion  # noqa: E402
from napari_fcnseg.core.store import ModelStore  # noqa: E402


def _rounds(cache: Path) -> list[tuple[str, np.ndarray, np.ndarray, list[int], list[str], str]]:
    lung = bl.load_case("lung1", cache)
    ct = generate_volume("CT", (8, 512, 512), 300_004)
    generated = bl.spread(bl.foreground_slices(ct.labels), 5)
    return [
        ("lung1, correction", lung.image, lung.labels, lung.annotated, lung.class_names, "ct"),
        ("lung1, new class", lung.image, (lung.labels == 2).astype(np.uint8), lung.annotated,
         ["background", "nodule"], "ct"),
        ("generated CT, correction", ct.image, ct.labels, generated, list(CLASS_NAMES), "ct"),
        ("generated CT, new classes", ct.image, ct.labels, generated,
         ["background", "liver", "tumour"], "ct"),
    ]


def _timed(work) -> tuple:
    """Run a round; its result, seconds in all, and seconds until its model was ready (the
    record handing it out before the held-out check), None without a check."""
    t = time.perf_counter()
    ready: list[float] = []

    def note(record) -> None:
        if record.result is not None:
            ready.append(time.perf_counter() - t)

    result = run_to_completion(work, note)
    return result, time.perf_counter() - t, ready[0] if ready else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-heldout", action="store_true", help="time the final model only")
    parser.add_argument("--precisions", default="float32,auto",
                        help="comma-separated FinetuneSettings.precision values to time")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    threads = configure_threads()
    start = ModelStore().load("bundled")
    cache = bl.cache_dir(args.cache_dir)
    precisions = args.precisions.split(",")
    cpu = torch.device("cpu")
    named = [f"{p} ({str(training_dtype(p, cpu)).removeprefix('torch.')})" if p == "auto" else p
             for p in precisions]
    print(f"{threads} torch threads\n")
    print("| round | annotated slices | steps (final + folds) | "
          + " | ".join(f"seconds, {n}" for n in named) + " |")
    print("|---|---|---|" + "---|" * len(precisions))
    for label, image, labels, annotated, names, modality in _rounds(cache):
        sparse = bl.annotated_only(labels, annotated)
        times = []
        for precision in precisions:
            settings = FinetuneSettings(holdout_folds=0 if args.no_heldout else
                                        FinetuneSettings.holdout_folds, precision=precision)
            result, total, ready = _timed(finetune_iter(
                start.net, image, sparse, slices=annotated, class_names=names,
                base_class_names=start.class_names, settings=settings, modality=modality))
            times.append(f"{total:.1f}" + (f" ({ready:.1f})" if ready is not None else ""))
        steps = result.steps * (1 + result.folds)
        print(f"| {label} | {len(annotated)} of {image.shape[-2]} x {image.shape[-1]} | "
              f"{result.steps} x {1 + result.folds} = {steps} | "
              + " | ".join(times) + " |", flush=True)


if __name__ == "__main__":
    main()
