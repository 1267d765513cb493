"""Random geometric and intensity changes for training batches.

Two geometric regimes:

``"any"``
    Flips and right-angle rotations: for generated data, where no orientation is special.
``"anatomical"``
    For fine-tuning on real scans, where orientation carries meaning (the spine is posterior in
    every axial slice): a left-right flip, then a small random rotation, scaling and shear applied
    to image, targets and mask alike. Pixels that come from outside the slice leave the loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _affine(images: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
            generator: torch.Generator, max_rotation: float, max_scale: float):
    """Rotate (degrees), scale (fraction) and shear each sample by a random small amount."""
    n = images.shape[0]
    angle = torch.empty(n).uniform_(-max_rotation, max_rotation, generator=generator)
    angle = angle * math.pi / 180
    scale = torch.exp(torch.empty(n).uniform_(math.log(1 - max_scale), math.log(1 + max_scale),
                                              generator=generator))
    shear = torch.empty(n).uniform_(-0.05, 0.05, generator=generator)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin + shear
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    theta = theta.to(images.device)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                           align_corners=False)
    stacked = torch.stack([targets.to(images.dtype), valid.to(images.dtype)], dim=1)
    stacked = F.grid_sample(stacked, grid, mode="nearest", padding_mode="zeros",
                            align_corners=False)
    return images, stacked[:, 0].round().to(targets.dtype), stacked[:, 1] > 0.5


def _blur(images: torch.Tensor, generator: torch.Generator, p: float) -> torch.Tensor:
    """Gaussian blur (sigma 0.5-1.5 px) on a random fraction ``p`` of the samples."""
    out = images.clone()
    for i in range(images.shape[0]):
        if float(torch.rand((), generator=generator)) >= p:
            continue
        sigma = float(torch.empty(()).uniform_(0.5, 1.5, generator=generator))
        radius = max(1, int(math.ceil(2 * sigma)))
        t = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
        k = torch.exp(-0.5 * (t / sigma) ** 2)
        k = k / k.sum()
        c = images.shape[1]
        x = images[i:i + 1]
        x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"),
                     k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"),
                     k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
        out[i:i + 1] = x
    return out


def augment_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor,
    generator: torch.Generator,
    intensity: bool = True,
    geometric: str = "any",
    max_rotation: float = 15.0,
    max_scale: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply the same random geometric change to images, targets and masks; jitter intensity.

    Parameters
    ----------
    images : torch.Tensor
        (N, C, H, W) float in [0, 1].
    targets : torch.Tensor
        (N, H, W) int64.
    valid : torch.Tensor
        (N, H, W) bool: pixels that count in the loss.
    generator : torch.Generator
        Seeded source of randomness.
    intensity : bool
        Also apply random gamma, contrast, brightness, noise (and, for ``"anatomical"``, blur
        as from thicker slices) per sample.
    geometric : {"any", "anatomical"}
        Flips and right-angle rotations, or orientation-preserving small affine changes
        (see the module docstring).
    max_rotation, max_scale : float
        Largest rotation in degrees and relative scale change for ``"anatomical"``.

    Returns
    -------
    tuple of torch.Tensor
        Augmented (images, targets, valid).
    """
    if geometric not in ("any", "anatomical"):
        raise ValueError(f"geometric must be 'any' or 'anatomical', not {geometric!r}")

    def coin() -> bool:
        return bool(torch.rand((), generator=generator) < 0.5)

    if coin():
        images, targets, valid = images.flip(-1), targets.flip(-1), valid.flip(-1)
    if geometric == "any":
        if coin():
            images, targets, valid = images.flip(-2), targets.flip(-2), valid.flip(-2)
        if images.shape[-1] == images.shape[-2]:
            k = int(torch.randint(0, 4, (), generator=generator))
            if k:
                images = images.rot90(k, (-2, -1))
                targets, valid = targets.rot90(k, (-2, -1)), valid.rot90(k, (-2, -1))
    else:
        images, targets, valid = _affine(images, targets, valid, generator,
                                         max_rotation, max_scale)
    if intensity:
        n = images.shape[0]
        shape = (n, 1, 1, 1)
        if geometric == "anatomical":
            images = _blur(images, generator, p=0.2)
        gamma = torch.exp(torch.empty(shape).uniform_(-0.3, 0.3, generator=generator))
        gain = torch.empty(shape).uniform_(0.85, 1.15, generator=generator)
        shift = torch.empty(shape).uniform_(-0.08, 0.08, generator=generator)
        noise = torch.empty(shape).uniform_(0.0, 0.03, generator=generator)
        images = images.clamp(0, 1).pow(gamma.to(images.device)) * gain.to(images.device)
        images = images + shift.to(images.device)
        images = images + noise.to(images.device) * torch.randn(
            images.shape, generator=generator).to(images.device)
    return images.contiguous(), targets.contiguous(), valid.contiguous()
