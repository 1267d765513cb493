"""Fine-tune a segmentation network on the slices a user corrected or reviewed.

Only the annotated slices enter the loss (the rest of the volume is still a guess). The network
is trained on a copy, so stopping the generator (cancel) leaves the caller's model untouched.
BatchNorm running statistics stay fixed by default: a batch drawn from three slices gives poor
statistics, and frozen statistics adapted better in our measurements (BENCHMARKS.md).
Forgetting is held back by an L2 penalty that pulls every shared weight towards its starting
value (L2-SP), so the network moves only as far as the corrections ask. A NaN or exploding loss
stops training and restores the last good weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from .adam import Adam
from .augment import augment_batch
from .device import pick_device
from .losses import dice_ce_loss
from .metrics import dice_per_class
from .nets import pad_to_multiple, replace_head
from .normalize import Normalizer, fit_normalizer
from .predict import predict
from .progress import Progress, run_to_completion
from .slices import stack_slices


@dataclass
class FinetuneSettings:
    """Hyper-parameters of one fine-tuning round.

    Attributes
    ----------
    steps : int
        Optimiser steps.
    lr : float
        Peak learning rate (Adam, cosine decay after a short warm-up).
    batch_size : int
        Slices (or crops) per step.
    crop : int
        Slices larger than this are trained on random ``crop`` x ``crop`` windows.
    anchor_weight : float
        Strength of the pull towards the starting weights (L2-SP); 0 disables it.
    grad_clip : float
        Gradient norm limit.
    explode_factor : float
        A loss above this many times the first steps' median counts as exploding.
    freeze_norm_stats : bool
        Keep BatchNorm running statistics fixed (default); False lets them follow the
        annotated slices.
    seed : int
        Seed for sampling and augmentation.
    """

    steps: int = 120
    lr: float = 1e-3
    batch_size: int = 4
    crop: int = 256
    anchor_weight: float = 1e-3
    grad_clip: float = 5.0
    explode_factor: float = 20.0
    freeze_norm_stats: bool = True
    seed: int = 0

    def to_dict(self) -> dict:
        """Return the settings as a JSON-serialisable dict."""
        return asdict(self)


@dataclass
class FinetuneResult:
    """Outcome of a fine-tuning round.

    Attributes
    ----------
    net : torch.nn.Module
        The fine-tuned network (CPU, eval mode); the starting network is never modified.
    class_names : list of str
        Names of the network's classes.
    slices : list of int
        The annotated slices it was trained on.
    dice_before, dice_after : dict
        Dice per foreground class name on the annotated slices, before and after.
    steps : int
        Optimiser steps completed.
    stopped : str or None
        Why training stopped early, in plain words (NaN or exploding loss), else None.
    settings : dict
        The hyper-parameters used.
    """

    net: nn.Module
    class_names: list[str]
    slices: list[int]
    dice_before: dict[str, float]
    dice_after: dict[str, float]
    steps: int
    stopped: str | None = None
    settings: dict = field(default_factory=dict)

    def metadata(self, parent: str) -> dict:
        """Return the model metadata (lineage, data, scores) to save with the network."""
        return {
            "parent": parent,
            "classes": list(self.class_names),
            "num_annotated_slices": len(self.slices),
            "slices": list(self.slices),
            "hyperparameters": dict(self.settings),
            "steps": self.steps,
            "stopped": self.stopped,
            "dice_before": dict(self.dice_before),
            "dice_after": dict(self.dice_after),
        }


def annotated_slices(labels: np.ndarray) -> list[int]:
    """Return the slices (of ``labels.reshape(-1, Y, X)``) containing any non-zero label."""
    labels = np.asarray(labels)
    flat = labels.reshape(-1, labels.shape[-2] * labels.shape[-1]) if labels.ndim >= 2 else None
    if flat is None:
        raise ValueError("labels must be at least 2D")
    return [int(k) for k in np.flatnonzero(flat.any(axis=1))]


def _check_inputs(
    image: np.ndarray, labels: np.ndarray, slices: Sequence[int] | None
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    image, labels = np.asarray(image), np.asarray(labels)
    if image.ndim < 2:
        raise ValueError("the image must be 2D or a stack of slices")
    if image.shape != labels.shape:
        raise ValueError(f"image shape {image.shape} and labels shape {labels.shape} differ")
    if labels.dtype.kind not in "iub":
        raise ValueError(f"labels must be integers, not {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must not be negative")
    n_slices = int(np.prod(image.shape[:-2], dtype=np.int64))
    chosen = annotated_slices(labels) if slices is None else sorted({int(s) for s in slices})
    if not chosen:
        raise ValueError("no annotated slices: correct or mark at least one slice as reviewed")
    bad = [s for s in chosen if not 0 <= s < n_slices]
    if bad:
        raise ValueError(f"slice indices {bad} lie outside 0..{n_slices - 1}")
    return image, labels, chosen


def _class_names(labels: np.ndarray, slices: list[int], net: nn.Module,
                 class_names: Sequence[str] | None) -> list[str]:
    flat = labels.reshape(-1, *labels.shape[-2:])
    top = int(flat[slices].max()) if len(slices) else 0
    if class_names is None:
        n = max(net.config.num_classes, top + 1)
        return ["background", *[f"class {c}" for c in range(1, n)]]
    names = list(class_names)
    if top >= len(names):
        raise ValueError(
            f"the labels use class {top}, but only {len(names)} classes are named "
            f"({', '.join(names)})")
    return names


def _training_arrays(image, labels, slices, context, norm: Normalizer):
    """Normalised 2.5D inputs and targets of the annotated slices (kept on the CPU)."""
    h, w = image.shape[-2:]
    volumes = image.reshape(-1, *image.shape[-3:]) if image.ndim >= 3 else image[None, None]
    nz = volumes.shape[1]
    xs = np.stack([norm(stack_slices(volumes[k // nz], [k % nz], context)[0]) for k in slices])
    ys = labels.reshape(-1, h, w)[slices].astype(np.int64)
    return torch.from_numpy(xs), torch.from_numpy(ys)


def _sample(xs, ys, rng: np.random.Generator, batch: int, crop: int):
    idx = rng.integers(len(xs), size=batch)
    h, w = xs.shape[-2:]
    ch, cw = min(crop, h), min(crop, w)
    x_out, y_out = [], []
    for i in idx:
        y0, x0 = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
        x_out.append(xs[i, :, y0:y0 + ch, x0:x0 + cw])
        y_out.append(ys[i, y0:y0 + ch, x0:x0 + cw])
    return torch.stack(x_out), torch.stack(y_out)


def _batch_dice(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> float:
    """Mean hard Dice over the foreground classes present in the batch."""
    pred = logits.argmax(1)
    scores = []
    for c in range(1, logits.shape[1]):
        p, r = (pred == c) & valid, (target == c) & valid
        if r.any() or p.any():
            scores.append(2 * (p & r).sum().item() / (p.sum().item() + r.sum().item()))
    return float(np.mean(scores)) if scores else 1.0


def _slice_dice(net, image, labels, slices, names, norm, device) -> dict[str, float]:
    pred = predict(net, image, slices=slices, normalizer=norm, device=device).labels
    h, w = labels.shape[-2:]
    p = pred.reshape(-1, h, w)[slices]
    r = labels.reshape(-1, h, w)[slices]
    scores = dice_per_class(p, r, len(names))
    return {names[c]: round(float(v), 4) for c, v in scores.items()}


def _freeze_norm_stats(net: nn.Module) -> None:
    """Keep BatchNorm running statistics fixed while training the rest."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def finetune_iter(
    net: nn.Module,
    image: np.ndarray,
    labels: np.ndarray,
    *,
    slices: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    settings: FinetuneSettings | None = None,
    modality: str = "auto",
    device: str | torch.device | None = None,
) -> Generator[Progress, None, FinetuneResult]:
    """Fine-tune a copy of ``net`` on the annotated slices, yielding progress every step.

    Parameters
    ----------
    net : torch.nn.Module
        Starting network (from the model store); never modified.
    image : numpy.ndarray
        (Y, X), (Z, Y, X) or (..., Z, Y, X) image.
    labels : numpy.ndarray
        Integer labels of the same shape (0 = background).
    slices : sequence of int, optional
        Annotated slices, indices of ``labels.reshape(-1, Y, X)``. Default: every slice with a
        non-zero label. Give it explicitly so reviewed all-background slices count too.
    class_names : sequence of str, optional
        Names of the label classes; a count different from the network's gives it a new head
        (features kept). Default: the network's classes, generically named.
    settings : FinetuneSettings, optional
        Hyper-parameters; defaults finish 3 annotated 256 x 256 slices in well under a minute
        on a 2-core CPU.
    modality : str
        Intensity normalisation, as in :func:`~napari_fcnseg.core.normalize.fit_normalizer`.
    device : str or torch.device, optional
        Where to train; see :func:`~napari_fcnseg.core.device.pick_device`.

    Yields
    ------
    Progress
        After every step, with the loss and the batch Dice on the annotated slices.

    Returns
    -------
    FinetuneResult
        The new network and its before/after Dice on the annotated slices.

    Raises
    ------
    ValueError
        For mismatched shapes, non-integer or negative labels, no annotated slice, or labels
        using a class that ``class_names`` does not name.
    """
    settings = settings or FinetuneSettings()
    image, labels, chosen = _check_inputs(image, labels, slices)
    names = _class_names(labels, chosen, net, class_names)
    dev = device if isinstance(device, torch.device) else pick_device(device)
    norm = fit_normalizer(image, modality)

    model = copy.deepcopy(net).cpu()
    model.config = net.config
    if len(names) != model.config.num_classes:
        replace_head(model, len(names))
    yield Progress(0, settings.steps, "measuring Dice before fine-tuning")
    before = _slice_dice(model, image, labels, chosen, names, norm, dev)

    xs, ys = _training_arrays(image, labels, chosen, model.config.context, norm)
    model = model.to(dev)
    anchors = {n: p.detach().clone() for n, p in model.named_parameters()
               if not n.startswith("head.")}
    params = list(model.parameters())
    opt = Adam(params, lr=settings.lr)  # not torch.optim: see napari_fcnseg.core.adam
    warm = max(1, settings.steps // 10)

    def lr_at(step: int) -> float:
        """Fraction of the learning rate for 0-based ``step``: linear warm-up, cosine decay."""
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, settings.steps - warm)))

    rng = np.random.default_rng(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    multiple = getattr(model, "multiple", 32)
    last_good = copy.deepcopy(model.state_dict())
    first_losses: list[float] = []
    stopped = None
    done = 0
    model.train()
    if settings.freeze_norm_stats:
        _freeze_norm_stats(model)
    for step in range(1, settings.steps + 1):
        x, y = _sample(xs, ys, rng, settings.batch_size, settings.crop)
        x, y, valid = augment_batch(x, y, torch.ones_like(y, dtype=torch.bool), gen)
        x, (h, w) = pad_to_multiple(x, multiple)
        pad = (0, x.shape[-1] - w, 0, x.shape[-2] - h)
        y = torch.nn.functional.pad(y, pad)
        valid = torch.nn.functional.pad(valid, pad)
        x, y, valid = x.to(dev), y.to(dev), valid.to(dev)
        logits = model(x)
        loss = dice_ce_loss(logits, y, valid)
        if settings.anchor_weight > 0:
            drift = sum(((p - anchors[n]) ** 2).sum() for n, p in model.named_parameters()
                        if n in anchors)
            loss = loss + settings.anchor_weight * drift
        value = float(loss.detach())
        typical = float(np.median(first_losses)) if first_losses else None
        if not math.isfinite(value) or (
                typical is not None and step > 5 and value > settings.explode_factor * typical):
            model.load_state_dict(last_good)
            kind = "became NaN or infinite" if not math.isfinite(value) else "exploded"
            stopped = (f"the training loss {kind} at step {step}; training stopped and the "
                       f"weights from step {done} were kept")
            break
        if len(first_losses) < 5:
            first_losses.append(value)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
        opt.lr = settings.lr * lr_at(step - 1)
        opt.step()
        if not all(torch.isfinite(p).all() for p in params):
            model.load_state_dict(last_good)
            stopped = (f"the weights became NaN at step {step}; training stopped and the "
                       f"weights from step {done} were kept")
            break
        done = step
        last_good = {k: v.detach().clone() for k, v in model.state_dict().items()}
        dice = _batch_dice(logits.detach(), y, valid)
        yield Progress(step, settings.steps, f"step {step} of {settings.steps}", value, dice)

    model = model.cpu().eval()
    yield Progress(done, settings.steps, "measuring Dice after fine-tuning")
    after = _slice_dice(model, image, labels, chosen, names, norm, dev)
    return FinetuneResult(model, names, chosen, before, after, done, stopped, settings.to_dict())


def finetune(net: nn.Module, image: np.ndarray, labels: np.ndarray, **kwargs) -> FinetuneResult:
    """Fine-tune without progress reports; same arguments as :func:`finetune_iter`."""
    return run_to_completion(finetune_iter(net, image, labels, **kwargs))
