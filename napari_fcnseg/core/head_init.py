"""Fit the classification head on frozen features before fine-tuning (linear probing).

A class the starting model never knew gets a randomly initialised head row, whose logit starts
near zero against a background logit the model is sure of; a few hundred steps on a few slices
are often not enough for it to emerge at all. Fitting the head first, as a class-weighted
logistic regression on the network's own features of the annotated pixels, gives every class a
sensible starting point, and fine-tuning the whole network from there distorts the pretrained
features less than fine-tuning from a random head (linear probing then fine-tuning).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .adam import Adam
from .nets import SegmentationNet, head_bias, pad_to_multiple

PIXELS_PER_CLASS = 4000


def head_features(net: SegmentationNet, xs: torch.Tensor) -> torch.Tensor:
    """Return the features the head sees, (S, F, H, W), for a batch of inputs (eval mode)."""
    captured: list[torch.Tensor] = []
    hook = net.head.register_forward_hook(lambda _m, inp, _out: captured.append(inp[0]))
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            h, w = xs.shape[-2:]
            multiple = getattr(net, "multiple", 32)
            for i in range(xs.shape[0]):
                padded, _ = pad_to_multiple(xs[i:i + 1], multiple)
                net(padded)
                captured[-1] = captured[-1][..., :h, :w]
    finally:
        hook.remove()
        net.train(was_training)
    return torch.cat(captured)


def fit_head(net: SegmentationNet, xs: torch.Tensor, ys: torch.Tensor, valid: torch.Tensor,
             refit: Sequence[int], rng: np.random.Generator, iterations: int = 200,
             weight_decay: float = 1e-4) -> None:
    """Fit the head rows of the classes in ``refit`` to the annotated pixels, in place.

    Parameters
    ----------
    net : SegmentationNet
        Network with a 1x1 convolution ``head``; its other weights are not changed.
    xs, ys, valid : torch.Tensor
        Inputs (S, C, H, W), targets (S, H, W) and annotated-pixel mask (S, H, W).
    refit : sequence of int
        Classes whose head rows are fitted; the other rows stay as they are and compete in
        the softmax.
    rng : numpy.random.Generator
        Seeded generator for the pixel sample.
    iterations : int
        Full-batch Adam iterations (a few thousand pixels: milliseconds each).
    weight_decay : float
        L2 penalty on the fitted rows.
    """
    refit = sorted(set(int(c) for c in refit))
    if not refit:
        return
    feats = head_features(net, xs).cpu().permute(0, 2, 3, 1).reshape(-1, net.head.in_channels)
    target = ys.reshape(-1)
    mask = valid.reshape(-1).numpy()
    picked = []
    for c in np.unique(target.numpy()[mask]):
        where = np.flatnonzero((target.numpy() == c) & mask)
        take = min(len(where), PIXELS_PER_CLASS)
        picked.append(rng.choice(where, size=take, replace=False))
    if not picked:
        return
    idx = torch.from_numpy(np.concatenate(picked))
    f, t = feats[idx].float(), target[idx]
    n_classes = net.head.out_channels
    counts = torch.bincount(t, minlength=n_classes).float()
    # rarer classes weigh more, by the square root of their rarity: fully balanced weights
    # make a class of a few dozen pixels spill far over its neighbours
    weights = torch.where(counts > 0, counts.clamp_min(1).rsqrt(), torch.zeros_like(counts))
    weights = weights / weights[counts > 0].mean()
    head = net.head
    w_all = head.weight.detach().reshape(n_classes, -1).cpu().clone()
    b_all = head_bias(head).detach().cpu().clone()
    rows = torch.tensor(refit)
    scale = f.std(0).mean().clamp_min(1e-6)
    w_new = torch.zeros(len(refit), w_all.shape[1], requires_grad=True)
    b_new = torch.zeros(len(refit), requires_grad=True)
    with torch.no_grad():
        b_new += b_all[rows].mean() if len(refit) < n_classes else 0.0
    opt = Adam([w_new, b_new], lr=0.1)  # not torch.optim: see napari_fcnseg.core.adam
    for _ in range(iterations):
        opt.zero_grad()
        w = w_all.index_put((rows,), w_new / scale)
        b = b_all.index_put((rows,), b_new)
        loss = F.cross_entropy(f @ w.T + b, t, weight=weights)
        loss = loss + weight_decay * (w_new ** 2).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        dev = head.weight.device
        head.weight.view(n_classes, -1)[rows.to(dev)] = (w_new / scale).to(dev)
        head_bias(head)[rows.to(dev)] = b_new.to(dev)
