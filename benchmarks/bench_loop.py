"""Two rounds of the product's loop on real scans: does the second round leave less to correct?

    python benchmarks/bench_loop.py --cases spine-ct,spine-mr,abdomen-ct,breast1,lung1 --add 2
    python benchmarks/bench_loop.py --pick expected-errors   # other rules for the added slices:
    python benchmarks/bench_loop.py --pick uncertain-apart   # see --help

bench_learning.py scores one round. The product is a loop, and this benchmark follows it as the
widgets run it, on the cases of bench_learning.py:

1. Round 1: fine-tune the bundled model on the case's annotated slices (default settings).
2. Segment the other slices with it, scoring each slice's uncertainty (as the Segment widget
   does); the person corrects the ``--add`` slices *Next to review* proposes (the most uncertain
   ones nobody owns; here they take the reference labels).
3. Round 2, as the Fine-tune widget starts it: from the model that made the labels (round 1's),
   on every slice annotated so far, default settings (steps and rate by task: the round-1 model
   already knows the classes, so this is a correction round).

Beside it, in the same run: round 2 started over from the bundled model on the same slices, and
the random forest of bench_learning.py on the same slices. Everything is scored on the slices
annotated in neither round: mean Dice, and the voxels a person would still have to fix there
(predicted class differs from the reference), round 1's model included, so the columns compare
like with like. The held-out check is off (it does not change the final model).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_learning as bl  # noqa: E402

from napari_fcnseg.core.device import configure_threads  # noqa: E402
from napari_fcnseg.core.finetune import FinetuneSettings, finetune  # noqa: E402
from napari_fcnseg.core.predict import predict  # noqa: E402
from napari_fcnseg.core.store import ModelStore  # noqa: E402


def _round(net, base_names, case: bl.Case, slices: list[int]):
    """Fine-tune ``net`` on ``slices`` of the case with the default settings; (result, s)."""
    t = time.perf_counter()
    result = finetune(net, case.image, bl.annotated_only(case.labels, slices), slices=slices,
                      class_names=case.class_names, base_class_names=base_names,
                      settings=FinetuneSettings(holdout_folds=0), modality=case.modality,
                      device="cpu")
    return result, time.perf_counter() - t


def _score(pred: np.ndarray, case: bl.Case, rest: list[int]) -> tuple[float, int]:
    """Mean Dice over the scored classes and voxels to fix, on the slices ``rest``."""
    dice = bl.mean(bl.scores(pred[rest], case.labels[rest], case)) or 0.0
    return dice, int(np.count_nonzero(pred[rest] != case.labels[rest]))


def _ranking(seg, others: list[int], pick: str) -> dict[int, float]:
    """Score of every slice in ``others`` by the ``--pick`` rule (higher: proposed first)."""
    if pick.startswith("uncertain"):  # "Next to review": mean entropy over the foreground
        return {z: seg.uncertainty.get(z, 0.0) for z in others}
    # expected wrong pixels: the sum over the slice of 1 - the top class probability
    probs = seg.probabilities
    return {z: float((1 - probs[:, z].max(0)).sum()) for z in others}


def _propose(free: list[int], score: dict[int, float], owned: list[int], n: int,
             spread: bool) -> list[int]:
    """The ``n`` slices a person corrects, one after the other, each the best-scored one left;
    with ``spread``, among those not next to a slice already owned (when any is left)."""
    owned, picked = list(owned), []
    for _ in range(min(n, len(free))):
        left = [z for z in free if z not in picked]
        apart = [z for z in left if all(abs(z - o) > 1 for o in owned)] if spread else []
        best = max(apart or left, key=lambda z: (score[z], -z))
        picked.append(best)
        owned.append(best)
    return sorted(picked)


def run(case: bl.Case, add: int, start, pick: str = "uncertain") -> dict:
    """Both rounds on one case; the figures of every method on the slices left."""
    first = list(case.annotated)
    others = [z for z in range(len(case.image)) if z not in first]
    r1, s1 = _round(start.net, start.class_names, case, first)
    seg = predict(r1.net, case.image, slices=others, modality=case.modality, device="cpu",
                  uncertainty=True,
                  probabilities="float32" if pick == "expected-errors" else None)
    score = _ranking(seg, others, pick)
    added = _propose(others, score, first, add, spread=pick == "uncertain-apart")
    both = sorted(first + added)
    rest = [z for z in others if z not in added]
    r2, s2 = _round(r1.net, r1.class_names, case, both)
    over, s_over = _round(start.net, start.class_names, case, both)
    out = {"added": added, "round1": (*_score(seg.labels, case, rest), s1)}
    for key, result, seconds in (("round2", r2, s2), ("over", over, s_over)):
        pred = predict(result.net, case.image, slices=rest, modality=case.modality,
                       device="cpu").labels
        out[key] = (*_score(pred, case, rest), seconds)
    forest = bl.run_forest(dataclasses.replace(case, annotated=both, next_case=None), rest,
                           200_000)
    out["forest"] = (bl.mean(forest["dice"]) or 0.0, None, forest["train_s"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="spine-ct,spine-mr,abdomen-ct,breast1,lung1")
    parser.add_argument("--add", type=int, default=2,
                        help="slices corrected between the rounds (default 2)")
    parser.add_argument("--pick", choices=("uncertain", "uncertain-apart", "expected-errors"),
                        default="uncertain",
                        help="which slices the person corrects between the rounds: the "
                             "product's Next to review (default), the most uncertain not next "
                             "to an annotated slice, or the most expected wrong pixels")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    threads = configure_threads()
    start = ModelStore().load("bundled")
    cache = bl.cache_dir(args.cache_dir)
    print(f"{threads} torch threads; code {bl.code_version()}\n")
    print("| case | slices: round 1 + added | round 1 | round 2 from round 1 (default) "
          "| round 2 from the bundled model | forest on the same slices |")
    print("|---|---|---|---|---|---|")
    for name in args.cases.split(","):
        case = bl.load_case(name.strip(), cache)
        out = run(case, args.add, start, args.pick)

        def cell(key: str, out=out) -> str:
            dice, wrong, seconds = out[key]
            fix = f", {wrong:,} voxels to fix" if wrong is not None else ""
            return f"{dice:.3f}{fix} ({seconds:.0f} s)"

        print(f"| {case.name} | {len(case.annotated)} + {len(out['added'])} "
              f"({out['added']}) of {len(case.image)} | {cell('round1')} | {cell('round2')} | "
              f"{cell('over')} | {cell('forest')} |", flush=True)


if __name__ == "__main__":
    main()
