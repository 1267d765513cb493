"""The fine-tuning optimiser and its learning-rate schedule.

:func:`lr_factor` is the schedule (linear warm-up, then cosine decay). :class:`Adam` is Adam for
fine-tuning inside a viewer, without :mod:`torch.optim`'s first-use cost.

The first optimiser made with :mod:`torch.optim` imports ``torch._dynamo`` and sympy with it.
Large modules are unmarshalled while holding Python's global lock, so a napari viewer froze for
about 0.2 s when fine-tuning started, and the many new objects make every later full garbage
collection longer. :class:`Adam` does the arithmetic of
``torch.optim.Adam`` (no weight decay, no AMSGrad) with plain tensor operations instead;
``tests/core/test_adam.py`` checks that both take the same steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def lr_factor(step: int, steps: int) -> float:
    """Fraction of the peak learning rate at 0-based ``step``: linear warm-up, cosine decay."""
    warm = max(1, steps // 10)
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


class Adam:
    """Adam (Kingma and Ba, 2015), as ``torch.optim.Adam`` computes it.

    Parameters
    ----------
    params : iterable of torch.Tensor
        The tensors to optimise; those without a gradient at a step are skipped.
    lr : float
        Learning rate; may be changed between steps through :attr:`lr`.
    betas : tuple of float
        Decay rates of the running means of the gradient and of its square.
    eps : float
        Added to the denominator for numerical stability.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("Adam got no parameters to optimise")
        if not lr > 0 or not 0 <= betas[0] < 1 or not 0 <= betas[1] < 1 or not eps >= 0:
            raise ValueError(f"invalid Adam settings: lr={lr}, betas={betas}, eps={eps}")
        self.lr = float(lr)
        self.betas = betas
        self.eps = eps
        self.steps = [0] * len(self.params)
        self._means: list[torch.Tensor | None] = [None] * len(self.params)
        self._squares: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        """Forget the gradients of the last backward pass."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """Update every parameter that has a gradient, by one Adam step at :attr:`lr`."""
        beta1, beta2 = self.betas
        for i, p in enumerate(self.params):
            grad = p.grad
            if grad is None:
                continue
            mean, square = self._means[i], self._squares[i]
            if mean is None or square is None:
                mean = self._means[i] = torch.zeros_like(p, memory_format=torch.preserve_format)
                square = self._squares[i] = torch.zeros_like(p, memory_format=torch.preserve_format)
            self.steps[i] += 1
            t = self.steps[i]
            mean.lerp_(grad, 1 - beta1)
            square.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step_size = self.lr / (1 - beta1 ** t)
            denom = (square.sqrt() / math.sqrt(1 - beta2 ** t)).add_(self.eps)
            p.addcdiv_(mean, denom, value=-step_size)
