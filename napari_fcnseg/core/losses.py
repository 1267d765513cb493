"""Segmentation losses with an ignore mask (only annotated pixels count)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dice_ce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    class_weights: torch.Tensor | None = None,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Cross-entropy plus soft Dice over foreground classes, on valid pixels only.

    Parameters
    ----------
    logits : torch.Tensor
        (N, C, H, W) raw class scores.
    target : torch.Tensor
        (N, H, W) int64 class indices.
    valid : torch.Tensor, optional
        (N, H, W) bool; pixels outside it do not contribute (partial annotation).
    class_weights : torch.Tensor, optional
        (C,) weights for the cross-entropy term.
    smooth : float
        Dice smoothing term.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    ce = F.cross_entropy(logits, target, weight=class_weights, reduction="none")
    probs = logits.softmax(dim=1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    if valid is not None:
        mask = valid.to(probs.dtype)
        ce = (ce * mask).sum() / mask.sum().clamp_min(1.0)
        probs = probs * mask[:, None]
        onehot = onehot * mask[:, None]
    else:
        ce = ce.mean()
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)[1:]
    denom = (probs.sum(dims) + onehot.sum(dims))[1:]
    dice = (2 * inter + smooth) / (denom + smooth)
    return ce + (1 - dice).mean()


def l2sp_penalty(model: nn.Module, anchors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Squared distance of the trainable weights from their starting values (L2-SP).

    Li, Grandvalet and Davoine, "Explicit inductive bias for transfer learning with
    convolutional networks", ICML 2018: pulling fine-tuned weights towards the pre-trained ones,
    rather than towards zero, keeps what the network learned before while it fits a few slices.

    Parameters
    ----------
    model : torch.nn.Module
        The network being fine-tuned.
    anchors : dict of str to torch.Tensor
        Parameter name -> starting value; parameters without an anchor (the head) and frozen
        ones are not pulled.
    """
    drift = [((p - anchors[n]) ** 2).sum() for n, p in model.named_parameters()
             if n in anchors and p.requires_grad]
    return sum(drift, torch.zeros(()))  # summed in order, as the loss always was
