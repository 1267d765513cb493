"""Progress records yielded by long-running core work, and a helper to run it to the end."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Progress:
    """One progress report.

    Attributes
    ----------
    step, total : int
        Work done so far and in all (batches for prediction, optimiser steps for training).
    message : str
        What is happening, in plain words.
    loss, dice : float or None
        Training loss and Dice on the annotated slices, when training.
    result : object or None
        A result usable before the work ends, when one is ready (a fine-tuned model before
        its held-out check); None on other records.
    """

    step: int
    total: int
    message: str = ""
    loss: float | None = None
    dice: float | None = None
    result: Any = None

    @property
    def fraction(self) -> float:
        """Share of the work done, in [0, 1]."""
        return self.step / self.total if self.total else 1.0


def run_to_completion(
    work: Generator[Progress, None, R], on_progress: Callable[[Progress], None] | None = None
) -> R:
    """Drive a progress generator to its end and return its result.

    Parameters
    ----------
    work : generator
        A generator yielding :class:`Progress` and returning a result.
    on_progress : callable, optional
        Called with every progress record.
    """
    while True:
        try:
            record = next(work)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(record)
