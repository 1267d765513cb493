"""Fine-tune a segmentation network on the slices a user corrected or reviewed.

Only annotated pixels enter the loss: whole corrected slices by default, or, with an ignore
label, just the strokes a person painted (the rest of the volume is still a guess). The network
is trained on a copy, so stopping the generator (cancel) leaves the caller's model untouched.

The recipe, chosen for learning from one to five slices without memorising them:

- the head is first fitted to the network's features of the annotated pixels (linear probing),
  so a class the starting model never knew starts from a sensible decision instead of a random
  one, then the whole network is trained from there;
- crops are centred on each annotated class in turn, so small structures are in every batch;
- orientation-preserving augmentation (small rotations, scaling, shear, left-right flip, blur,
  gamma, contrast and noise);
- the encoder learns ten times slower than the decoder and head, BatchNorm statistics stay
  fixed, and an L2 pull towards the starting weights (L2-SP) limits forgetting;
- a NaN or exploding loss stops training and keeps the last good weights.

Dice is reported honestly (:mod:`~napari_fcnseg.core.holdout`): the starting model on the
annotated slices, the fine-tuned recipe on annotated slices it did not train on (k-fold), and
the final model on its own training slices, labelled as such.
"""

from __future__ import annotations

import copy
from collections.abc import Generator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from .arrays import LazyArray, as_image, read_with_context
from .device import pick_device, training_dtype
from .finetune_config import (
    CORRECTION_LR,
    CORRECTION_STEPS,
    FROM_SCRATCH_LR,
    FROM_SCRATCH_STEPS,
    NEW_CLASS_LR,
    NEW_CLASS_STEPS,
    FinetuneResult,
    FinetuneSettings,
)
from .head_init import fit_head
from .holdout import Counts, kfold_iter, masked_counts, pooled_dice
from .nets import SegmentationNet, head_bias, pad_to_multiple, replace_head
from .normalize import Normalizer, fit_normalizer
from .progress import Progress, run_to_completion
from .training import train_iter


def heldout_folds(settings: FinetuneSettings, n_annotated: int) -> int:
    """Folds of the held-out estimate for ``n_annotated`` slices (0: no estimate)."""
    folds = min(n_annotated, settings.holdout_folds)
    return folds if folds >= 2 else 0


def total_steps(settings: FinetuneSettings, n_annotated: int,
                learns_new_classes: bool = False) -> int:
    """Optimiser steps of a round: the final model's plus every held-out fold's.

    ``learns_new_classes`` decides the steps left to the task (see
    :meth:`FinetuneSettings.for_task`).
    """
    steps = settings.for_task(learns_new_classes).steps or 0
    return steps * (1 + heldout_folds(settings, n_annotated))


def learns_new_classes(drawn: Sequence[int], class_names: Sequence[str],
                       base_class_names: Sequence[str] | None, base_num_classes: int) -> bool:
    """Whether a drawn class is one the starting model has no output row for.

    Parameters
    ----------
    drawn : sequence of int
        Label values present on the annotated pixels.
    class_names : sequence of str
        Names of the round's classes.
    base_class_names : sequence of str or None
        Names of the starting model's classes (rows are matched by name); None matches rows
        by index, as :func:`finetune_iter` does.
    base_num_classes : int
        Outputs of the starting model.
    """
    kept = set(_kept_rows(list(class_names), base_class_names, base_num_classes).values())
    return any(int(c) not in kept for c in drawn)


def annotated_slices(labels: np.ndarray, ignore_label: int | None = None) -> list[int]:
    """Return the slices (of ``labels.reshape(-1, Y, X)``) holding an annotation.

    Without ``ignore_label`` a slice is annotated when it has any non-zero label; with it,
    when any pixel differs from ``ignore_label`` (0 is then an explicit background stroke).
    """
    labels = np.asarray(labels)
    if labels.ndim < 2:
        raise ValueError("labels must be at least 2D")
    flat = labels.reshape(-1, labels.shape[-2] * labels.shape[-1])
    marked = flat != ignore_label if ignore_label is not None else flat != 0
    return [int(k) for k in np.flatnonzero(marked.any(axis=1))]


def _check_inputs(image: np.ndarray | LazyArray, labels: np.ndarray,
                  slices: Sequence[int] | None, ignore_label: int | None
                  ) -> tuple[np.ndarray | LazyArray, np.ndarray, list[int]]:
    image, labels = as_image(image), np.asarray(labels)  # a lazy image stays on disk
    if image.ndim < 2:
        raise ValueError("the image must be 2D or a stack of slices")
    if tuple(image.shape) != labels.shape:
        raise ValueError(f"image shape {tuple(image.shape)} and labels shape {labels.shape} "
                         "differ")
    if labels.dtype.kind not in "iub":
        raise ValueError(f"labels must be integers, not {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must not be negative")
    n_slices = int(np.prod(image.shape[:-2], dtype=np.int64))
    if slices is None:
        chosen = annotated_slices(labels, ignore_label)
    else:
        chosen = sorted({int(s) for s in slices})
    if not chosen:
        raise ValueError("no annotated slices: correct or mark at least one slice as reviewed")
    bad = [s for s in chosen if not 0 <= s < n_slices]
    if bad:
        raise ValueError(f"slice indices {bad} lie outside 0..{n_slices - 1}")
    return image, labels, chosen


__all__ = [
    "CORRECTION_LR", "CORRECTION_STEPS", "FROM_SCRATCH_LR", "FROM_SCRATCH_STEPS", "MAX_LABEL",
    "NEW_CLASS_LR", "NEW_CLASS_STEPS", "FinetuneResult", "FinetuneSettings", "annotated_slices",
    "finetune", "finetune_iter", "heldout_folds", "learns_new_classes", "total_steps",
]

#: Largest label value: predictions are stored as uint8 (one class per value, 0..255).
MAX_LABEL = 255


def _class_names(top: int, net: SegmentationNet, class_names: Sequence[str] | None) -> list[str]:
    if top > MAX_LABEL:
        raise ValueError(f"the labels use value {top}; label values above {MAX_LABEL} are not "
                         "supported (classes are numbered 1, 2, 3, ...)")
    if class_names is None:
        n = max(net.config.num_classes, top + 1)
        return ["background", *[f"class {c}" for c in range(1, n)]]
    names = list(class_names)
    if top >= len(names):
        raise ValueError(
            f"the labels use class {top}, but only {len(names)} classes are named "
            f"({', '.join(names)})")
    return names


def _training_arrays(image, labels, slices, context, norm: Normalizer, ignore_label):
    """Normalised 2.5D inputs, targets and annotated-pixel masks (kept on the CPU).

    Only the annotated slices and their neighbours are read, so the image may be lazy.
    """
    h, w = image.shape[-2:]
    xs = np.stack([norm(read_with_context(image, k, context)) for k in slices])
    ys = labels.reshape(-1, h, w)[slices].astype(np.int64)
    if ignore_label is None:
        valid = np.ones(ys.shape, bool)
    else:
        valid = ys != ignore_label
        ys[~valid] = 0
    return torch.from_numpy(xs), torch.from_numpy(ys), torch.from_numpy(valid)


def _predict_stacks(net: SegmentationNet, xs: torch.Tensor, device: torch.device) -> np.ndarray:
    """Class per pixel of already normalised 2.5D inputs (S, C, H, W)."""
    h, w = xs.shape[-2:]
    out = []
    net.eval()
    with torch.inference_mode():
        for i in range(xs.shape[0]):
            x, _ = pad_to_multiple(xs[i:i + 1].to(device), getattr(net, "multiple", 32))
            out.append(net(x)[0, :, :h, :w].argmax(0).cpu().numpy())
    return np.stack(out)


def _kept_rows(names: list[str], base_names: Sequence[str] | None, old: int) -> dict[int, int]:
    """Map starting-head rows to the label set's classes they already stand for."""
    if base_names is None:
        return {k: k for k in range(min(old, len(names)))}
    return {k: names.index(n) for k, n in enumerate(base_names[:old]) if n in names}


def _adapt_head(model: SegmentationNet, names: list[str], kept: dict[int, int]) -> list[int]:
    """Size the head for ``names``, keeping known rows; return the classes that are new."""
    old = model.head
    if len(names) != model.config.num_classes or any(k != v for k, v in kept.items()):
        replace_head(model, len(names))
        with torch.no_grad():
            for k, v in kept.items():
                model.head.weight[v] = old.weight[k]
                head_bias(model.head)[v] = head_bias(old)[k]
    return [c for c in range(len(names)) if c not in kept.values()]


def finetune_iter(
    net: SegmentationNet,
    image: np.ndarray | LazyArray,
    labels: np.ndarray,
    *,
    slices: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    base_class_names: Sequence[str] | None = None,
    ignore_label: int | None = None,
    settings: FinetuneSettings | None = None,
    modality: str = "auto",
    device: str | torch.device | None = None,
) -> Generator[Progress, None, FinetuneResult]:
    """Fine-tune a copy of ``net`` on the annotated slices, yielding progress every step.

    Parameters
    ----------
    net : SegmentationNet
        Starting network (from the model store); never modified.
    image : numpy.ndarray or array-like
        (Y, X), (Z, Y, X) or (..., Z, Y, X) image; a lazy one (dask, zarr) is read only where
        the annotated slices and their neighbours are.
    labels : numpy.ndarray
        Integer labels of the same shape (0 = background).
    slices : sequence of int, optional
        Annotated slices, indices of ``labels.reshape(-1, Y, X)``. Default: see
        :func:`annotated_slices`. Give it explicitly so reviewed all-background slices count.
    class_names : sequence of str, optional
        Names of the label classes. Default: the network's classes, generically named.
    base_class_names : sequence of str, optional
        Names of the starting network's classes: head rows whose name is in ``class_names``
        are kept; the others are refitted. Default: rows are matched by index.
    ignore_label : int, optional
        Label value of pixels nobody annotated (partial labels): they stay out of the loss and
        out of every Dice. Default: every pixel of an annotated slice counts.
    settings : FinetuneSettings, optional
        Hyper-parameters.
    modality : str
        Intensity normalisation, as in :func:`~napari_fcnseg.core.normalize.fit_normalizer`.
    device : str or torch.device, optional
        Where to train; see :func:`~napari_fcnseg.core.device.pick_device`.

    Yields
    ------
    Progress
        After every step of the final model and of each held-out fold, with the loss and the
        batch Dice. With held-out folds, one record between the two carries in ``result`` the
        finished model as a :class:`FinetuneResult` without its held-out estimate (``pending``
        says why), so a caller can save and use it while the check runs.

    Returns
    -------
    FinetuneResult
        The new network, the starting model's Dice, the held-out Dice estimate and the
        training-slice Dice.

    Raises
    ------
    ValueError
        For mismatched shapes, non-integer or negative labels, no annotated slice, or labels
        using a class that ``class_names`` does not name.
    """
    settings = settings or FinetuneSettings()
    image, labels, chosen = _check_inputs(image, labels, slices, ignore_label)
    dev = device if isinstance(device, torch.device) else pick_device(device)
    norm = fit_normalizer(image, modality)
    xs, ys, valid = _training_arrays(image, labels, chosen, net.config.context, norm,
                                     ignore_label)
    top = int(ys[valid].max()) if bool(valid.any()) else 0
    names = _class_names(top, net, class_names)
    kept = _kept_rows(names, base_class_names, net.config.num_classes)
    drawn = np.unique(ys[valid].numpy()).tolist()
    settings = settings.for_task(learns_new_classes(drawn, names, base_class_names,
                                                    net.config.num_classes))
    # the model card records the precision used, not "auto"
    used = str(training_dtype(settings.precision, dev)).removeprefix("torch.")
    settings = replace(settings, precision=used)
    folds = heldout_folds(settings, len(chosen))
    total = total_steps(settings, len(chosen))

    def counts(model: SegmentationNet, positions: list[int], mapping=None) -> Counts:
        pred = _predict_stacks(model, xs[positions], dev)
        if mapping is not None:
            lut = np.zeros(max(mapping, default=0) + 1, np.int64)
            lut[list(mapping)] = list(mapping.values())
            pred = lut[np.minimum(pred, len(lut) - 1)] * (pred < len(lut))
        return masked_counts(pred, ys[positions].numpy(), valid[positions].numpy(), len(names))

    yield Progress(0, total, "measuring the starting model on the annotated slices")
    start = copy.deepcopy(net).to(dev)
    start.config = net.config
    everything = list(range(len(chosen)))
    before = pooled_dice([counts(start, everything, kept)], names)
    new_classes = _adapt_head(start, names, kept)

    def prepare(model: SegmentationNet, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> None:
        if settings.fit_head_first:
            fit_head(model, x.to(dev), y, v, new_classes, np.random.default_rng(settings.seed))

    model = copy.deepcopy(start)
    model.config = start.config
    prepare(model, xs, ys, valid)
    outcome = yield from train_iter(model, xs, ys, valid, settings, dev, total=total)
    train_dice = pooled_dice([counts(model, everything)], names)
    model = model.cpu().eval()  # final: the folds below train copies of ``start``

    def result(after: dict[str, float], pending: str | None = None) -> FinetuneResult:
        return FinetuneResult(model, names, chosen, before, after, train_dice, outcome.steps,
                              outcome.stopped, settings.to_dict(), folds, pending)

    if folds:  # the model is usable now; the check only measures it
        yield Progress(settings.steps or 0, total, "model ready; measuring it on held-out "
                       "slices", result=result({}, "the held-out check has not finished"))
    fold_counts = yield from kfold_iter(start, xs, ys, valid, settings, dev, prepare, counts,
                                        step_offset=settings.steps or 0, total=total)
    return result(pooled_dice(fold_counts, names) if fold_counts else {})


def finetune(
    net: SegmentationNet, image: np.ndarray, labels: np.ndarray, **kwargs: Any
) -> FinetuneResult:
    """Fine-tune without progress reports; same arguments as :func:`finetune_iter`."""
    return run_to_completion(finetune_iter(net, image, labels, **kwargs))
