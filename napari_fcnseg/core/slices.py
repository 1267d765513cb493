"""Build 2.5D network inputs: a slice plus its neighbours as channels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stack_slices(volume: np.ndarray, indices: Sequence[int], context: int) -> np.ndarray:
    """Return the slices ``indices`` of ``volume`` with ``context`` neighbours each side.

    Parameters
    ----------
    volume : numpy.ndarray
        (Z, Y, X) normalised float32 volume.
    indices : sequence of int
        Slices to take.
    context : int
        Neighbours each side; edges repeat the first/last slice.

    Returns
    -------
    numpy.ndarray
        (len(indices), 2 * context + 1, Y, X) float32.
    """
    nz = volume.shape[0]
    offsets = np.arange(-context, context + 1)
    rows = np.clip(np.asarray(indices)[:, None] + offsets[None, :], 0, nz - 1)
    return np.ascontiguousarray(volume[rows], dtype=np.float32)
