"""Class-balanced crops from a few annotated slices.

With random crops a small structure (the aorta on a 512 x 512 slice, a lesion) is rarely in the
batch, so a network fine-tuned on a few slices never learns it. Here every crop is centred on a
pixel of one annotated class, the classes taking turns, so every class present on the slices
is in most batches. Crops are shifted to stay inside the slice.
"""

from __future__ import annotations

import numpy as np
import torch


class BalancedCropSampler:
    """Draw (image, target, valid) crops centred on pixels of classes chosen in turn.

    Parameters
    ----------
    xs : torch.Tensor
        (S, C, H, W) float inputs of the annotated slices.
    ys : torch.Tensor
        (S, H, W) int64 targets.
    valid : torch.Tensor
        (S, H, W) bool: annotated pixels (all True for fully corrected slices).
    crop : int
        Side of the square crops; slices smaller than it are used whole.
    rng : numpy.random.Generator
        Seeded source of randomness.
    random_fraction : float
        Fraction of crops placed uniformly at random instead (context away from structures).
    """

    def __init__(self, xs: torch.Tensor, ys: torch.Tensor, valid: torch.Tensor, crop: int,
                 rng: np.random.Generator, random_fraction: float = 0.25) -> None:
        self.xs, self.ys, self.valid = xs, ys, valid
        h, w = xs.shape[-2:]
        self.ch, self.cw = min(crop, h), min(crop, w)
        self.rng = rng
        self.random_fraction = random_fraction
        flat_y = ys.reshape(-1).numpy()
        flat_v = valid.reshape(-1).numpy()
        self._where: dict[int, np.ndarray] = {}
        for c in np.unique(flat_y[flat_v]):
            self._where[int(c)] = np.flatnonzero((flat_y == c) & flat_v)
        self.classes = sorted(self._where)
        self._turn = int(rng.integers(max(1, len(self.classes))))

    def _centre(self) -> tuple[int, int, int]:
        """A (slice, y, x) centre: a pixel of the next class in turn, or a random spot."""
        s_count, h, w = self.ys.shape
        if not self.classes or self.rng.random() < self.random_fraction:
            return int(self.rng.integers(s_count)), int(self.rng.integers(h)), int(
                self.rng.integers(w))
        c = self.classes[self._turn % len(self.classes)]
        self._turn += 1
        pixels = self._where[c]
        k = int(pixels[self.rng.integers(len(pixels))])
        return k // (h * w), (k // w) % h, k % w

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``batch`` crops as (N, C, ch, cw) inputs, (N, ch, cw) targets and masks."""
        h, w = self.xs.shape[-2:]
        x_out, y_out, v_out = [], [], []
        for _ in range(batch):
            s, cy, cx = self._centre()
            jitter_y = int(self.rng.integers(-(self.ch // 4), self.ch // 4 + 1))
            jitter_x = int(self.rng.integers(-(self.cw // 4), self.cw // 4 + 1))
            y0 = int(np.clip(cy - self.ch // 2 + jitter_y, 0, h - self.ch))
            x0 = int(np.clip(cx - self.cw // 2 + jitter_x, 0, w - self.cw))
            x_out.append(self.xs[s, :, y0:y0 + self.ch, x0:x0 + self.cw])
            y_out.append(self.ys[s, y0:y0 + self.ch, x0:x0 + self.cw])
            v_out.append(self.valid[s, y0:y0 + self.ch, x0:x0 + self.cw])
        return torch.stack(x_out), torch.stack(y_out), torch.stack(v_out)
