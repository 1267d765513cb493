"""The optimisation loop of one fine-tuning run, shared by the final model and the folds.

:func:`train_iter` trains a network in place on annotated slices (inputs, targets, a mask of
annotated pixels) and yields a :class:`~napari_fcnseg.core.progress.Progress` record per step.
It knows nothing of volumes, class names or evaluation: :mod:`~napari_fcnseg.core.finetune`
prepares the arrays and :mod:`~napari_fcnseg.core.holdout` calls it once per fold.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .adam import Adam, lr_factor
from .augment import augment_batch
from .device import training_dtype
from .losses import dice_ce_loss, l2sp_penalty
from .nets import SegmentationNet, pad_to_multiple
from .progress import Progress
from .sampling import BalancedCropSampler

#: Parameter-name prefixes of the encoder (the part that learned general image features).
ENCODER_PREFIXES = ("stem.", "down.", "encoder.")


@dataclass
class TrainOutcome:
    """What :func:`train_iter` returns: steps completed and why it stopped early, if it did."""

    steps: int
    stopped: str | None


def _freeze_norm_stats(net: SegmentationNet) -> None:
    """Keep BatchNorm running statistics fixed while training the rest."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def batch_dice(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> float:
    """Mean hard Dice over the foreground classes present in the batch."""
    pred = logits.argmax(1)
    scores = []
    for c in range(1, logits.shape[1]):
        p, r = (pred == c) & valid, (target == c) & valid
        if r.any() or p.any():
            scores.append(2 * (p & r).sum().item() / (p.sum().item() + r.sum().item()))
    return float(np.mean(scores)) if scores else 1.0


def train_iter(model: SegmentationNet, xs: torch.Tensor, ys: torch.Tensor, valid: torch.Tensor,
               settings, device: torch.device, *, step_offset: int = 0, total: int | None = None,
               label: str = "step") -> Generator[Progress, None, TrainOutcome]:
    """Train ``model`` in place on the annotated slices; yield progress after every step.

    Parameters
    ----------
    model : SegmentationNet
        Network on ``device``; modified in place.
    xs, ys, valid : torch.Tensor
        CPU inputs (S, C, H, W), targets (S, H, W) int64, annotated-pixel mask (S, H, W).
    settings : FinetuneSettings
        Steps, learning rates, crop, batch, anchoring, augmentation and guards.
    device : torch.device
        Where the network runs.
    step_offset, total : int
        Shift the reported step numbers and total (a fold after the main run).
    label : str
        What the progress message calls a step.

    Yields
    ------
    Progress
        Loss and batch Dice after every step.

    Returns
    -------
    TrainOutcome
        Steps completed and, if the loss diverged, why training stopped (the last good weights
        are restored).
    """
    steps = settings.steps
    total = total or steps
    anchors = {n: p.detach().clone() for n, p in model.named_parameters()
               if not n.startswith("head.")}
    encoder = [p for n, p in model.named_parameters() if n.startswith(ENCODER_PREFIXES)]
    rest = [p for n, p in model.named_parameters() if not n.startswith(ENCODER_PREFIXES)]
    # not torch.optim (it imports torch._dynamo): see napari_fcnseg.core.adam
    groups = [(Adam(rest, lr=settings.lr), 1.0)]
    if encoder and settings.encoder_lr_factor > 0:
        groups.append((Adam(encoder, lr=settings.lr), settings.encoder_lr_factor))
    elif encoder:
        for p in encoder:
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    rng = np.random.default_rng(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    sampler = BalancedCropSampler(xs, ys, valid, settings.crop, rng,
                                  random_fraction=settings.random_crop_fraction)
    multiple = getattr(model, "multiple", 32)
    last_good = copy.deepcopy(model.state_dict())
    initial = copy.deepcopy(last_good) if settings.blend_start > 0 else {}
    first_losses: list[float] = []
    done, stopped = 0, None
    # channels-last convolutions are about a quarter faster on the CPU (as in predict)
    layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    model.to(memory_format=layout)  # type: ignore[call-overload]
    compute = training_dtype(settings.precision, device)
    model.train()
    if settings.freeze_norm_stats:
        _freeze_norm_stats(model)
    for step in range(1, steps + 1):
        x, y, v = sampler.sample(settings.batch_size)
        x, y, v = augment_batch(x, y, v, gen, geometric=settings.augment)
        x, (h, w) = pad_to_multiple(x, multiple)
        pad = (0, x.shape[-1] - w, 0, x.shape[-2] - h)
        y, v = torch.nn.functional.pad(y, pad), torch.nn.functional.pad(v, pad)
        x, y, v = x.to(device).contiguous(memory_format=layout), y.to(device), v.to(device)
        with torch.autocast(device.type, dtype=compute, enabled=compute != torch.float32):
            logits = model(x)
        logits = logits.float()
        loss = dice_ce_loss(logits, y, v)
        if settings.anchor_weight > 0:
            loss = loss + settings.anchor_weight * l2sp_penalty(model, anchors)
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
        for opt, _ in groups:
            opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
        for opt, factor in groups:
            opt.lr = settings.lr * factor * lr_factor(step - 1, steps)
            opt.step()
        if not all(torch.isfinite(p).all() for p in params):
            model.load_state_dict(last_good)
            stopped = (f"the weights became NaN at step {step}; training stopped and the "
                       f"weights from step {done} were kept")
            break
        done = step
        last_good = {k: t.detach().clone() for k, t in model.state_dict().items()}
        yield Progress(step_offset + step, total, f"{label} {step} of {steps}", value,
                       batch_dice(logits.detach(), y, v))
    for p in model.parameters():
        p.requires_grad_(True)
    model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    if initial:
        _blend(model, initial, settings.blend_start)
    return TrainOutcome(done, stopped)


def _blend(model: SegmentationNet, initial: dict[str, torch.Tensor], fraction: float) -> None:
    """Move the floating-point weights ``fraction`` of the way back to ``initial``, in place."""
    state = model.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            start = initial.get(key)
            if start is not None and value.is_floating_point() and start.shape == value.shape:
                value.lerp_(start.to(value.device), fraction)
