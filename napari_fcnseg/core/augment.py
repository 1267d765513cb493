"""Random flips, right-angle rotations and intensity changes for training batches."""

from __future__ import annotations

import torch


def augment_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor,
    generator: torch.Generator,
    intensity: bool = True,
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
        Also apply random gamma, contrast and brightness per sample.

    Returns
    -------
    tuple of torch.Tensor
        Augmented (images, targets, valid).
    """
    def coin() -> bool:
        return bool(torch.rand((), generator=generator) < 0.5)

    if coin():
        images, targets, valid = images.flip(-1), targets.flip(-1), valid.flip(-1)
    if coin():
        images, targets, valid = images.flip(-2), targets.flip(-2), valid.flip(-2)
    if images.shape[-1] == images.shape[-2]:
        k = int(torch.randint(0, 4, (), generator=generator))
        if k:
            images = images.rot90(k, (-2, -1))
            targets, valid = targets.rot90(k, (-2, -1)), valid.rot90(k, (-2, -1))
    if intensity:
        n = images.shape[0]
        shape = (n, 1, 1, 1)
        gamma = torch.exp(torch.empty(shape).uniform_(-0.3, 0.3, generator=generator))
        gain = torch.empty(shape).uniform_(0.85, 1.15, generator=generator)
        shift = torch.empty(shape).uniform_(-0.08, 0.08, generator=generator)
        noise = torch.empty(shape).uniform_(0.0, 0.03, generator=generator)
        images = images.clamp(0, 1).pow(gamma.to(images.device)) * gain.to(images.device)
        images = images + shift.to(images.device)
        images = images + noise.to(images.device) * torch.randn(
            images.shape, generator=generator).to(images.device)
    return images.contiguous(), targets.contiguous(), valid.contiguous()
