"""Honest Dice for a fine-tuning round: measured on annotated slices a model did not train on.

Dice on the slices a network was trained on says how well it memorised them, not how well it
will segment the rest of the volume. With two or more annotated slices, :func:`kfold_iter`
splits them into folds, trains a copy of the starting network with the same recipe on all but
one fold and scores it on that fold; the counts of all folds are pooled into one Dice per
class. The starting network is scored on every annotated slice (it trained on none of them),
so both figures are measured on slices their model never saw.

A fold whose training slices lack a class that the other annotated slices show learns to
suppress it, which says nothing of the final model (it was shown that class): such a fold is
not counted for that class. A class drawn on one annotated slice only therefore has no
held-out estimate (the folds that trained on it can only count its false positives), and is
left out of it rather than reported as a failure.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Generator, Sequence

import numpy as np
import torch

from .nets import SegmentationNet
from .progress import Progress
from .training import train_iter

#: Counts per class: ``{class index: (intersection, prediction + reference voxels)}``.
Counts = dict[int, tuple[int, int]]


def masked_counts(pred: np.ndarray, ref: np.ndarray, valid: np.ndarray,
                  num_classes: int) -> Counts:
    """Intersection and size sums of every foreground class, over annotated pixels only."""
    p, r = pred[valid].astype(np.int64), ref[valid].astype(np.int64)
    out = {}
    for c in range(1, num_classes):
        pc, rc = p == c, r == c
        out[c] = (int(np.count_nonzero(pc & rc)), int(np.count_nonzero(pc) + np.count_nonzero(rc)))
    return out


def pooled_dice(counts: Sequence[Counts], names: Sequence[str]) -> dict[str, float]:
    """Pool fold counts into Dice per class name.

    A class nobody drew nor found scores 1; a class that no fold counts is left out.
    """
    out = {}
    for c in range(1, len(names)):
        if not any(c in k for k in counts):
            continue
        inter = sum(k.get(c, (0, 0))[0] for k in counts)
        total = sum(k.get(c, (0, 0))[1] for k in counts)
        out[names[c]] = round(2 * inter / total, 4) if total else 1.0
    return out


def make_folds(n_slices: int, max_folds: int) -> list[list[int]]:
    """Split positions 0..n-1 into at most ``max_folds`` interleaved folds (none if n < 2)."""
    k = min(n_slices, max_folds)
    if k < 2:
        return []
    return [list(range(i, n_slices, k)) for i in range(k)]


def kfold_iter(start: SegmentationNet, xs: torch.Tensor, ys: torch.Tensor, valid: torch.Tensor,
               settings, device: torch.device,
               prepare: Callable[[SegmentationNet, torch.Tensor, torch.Tensor, torch.Tensor], None],
               score: Callable[[SegmentationNet, list[int]], Counts], *, step_offset: int = 0,
               total: int | None = None) -> Generator[Progress, None, list[Counts]]:
    """Train one copy of ``start`` per fold on the other folds and score it on its own fold.

    Parameters
    ----------
    start : SegmentationNet
        The starting network, with its head already sized for the label set; not modified.
    xs, ys, valid : torch.Tensor
        Inputs, targets and annotated-pixel masks of all annotated slices.
    settings : FinetuneSettings
        The same recipe as the final model's (steps, learning rates, ...).
    device : torch.device
        Where to train.
    prepare : callable
        ``prepare(model, xs, ys, valid)`` runs the steps before training (fitting the head) on
        the fold's training slices, as for the final model.
    score : callable
        ``score(model, positions)`` returns :data:`Counts` of ``model`` on those annotated
        slices (positions into ``xs``).
    step_offset, total : int
        Step numbering of the progress records.

    Yields
    ------
    Progress
        After every step of every fold.

    Returns
    -------
    list of Counts
        One per fold (empty when fewer than two slices are annotated). An annotated class is
        left out of the folds that did not train on it, and out of every fold when no fold
        that trained on it holds it on its scored slices.
    """
    folds = make_folds(len(xs), settings.holdout_folds)
    drawn = _classes_in(ys, valid)
    scored = []
    for i, held in enumerate(folds):
        train = [j for j in range(len(xs)) if j not in held]
        model = copy.deepcopy(start).to(device)
        model.config = start.config
        prepare(model, xs[train], ys[train], valid[train])
        outcome = yield from train_iter(
            model, xs[train], ys[train], valid[train], settings, device,
            step_offset=step_offset + i * settings.steps, total=total,
            label=f"held-out check {i + 1} of {len(folds)}: step")
        del outcome
        scored.append((score(model.eval(), held), _classes_in(ys[train], valid[train]),
                       _classes_in(ys[held], valid[held])))
    # an annotated class counts in the folds that trained on it, and only if one of those
    # scores it where it is drawn (false positives alone are no estimate of finding it)
    measurable = {c for c in drawn if any(c in seen and c in shown for _, seen, shown in scored)}
    return [{c: v for c, v in counts.items() if c not in drawn or (c in seen and c in measurable)}
            for counts, seen, _ in scored]


def _classes_in(ys: torch.Tensor, valid: torch.Tensor) -> set[int]:
    """The class values on the annotated pixels of ``ys``."""
    return set(torch.unique(ys[valid]).tolist())
