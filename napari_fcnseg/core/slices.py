"""Slice geometry: how many 2D slices an array holds, where slice k is, 2.5D network inputs.

Slices are numbered as those of ``array.reshape(-1, Y, X)``: the z index of a volume, ``t * Z
+ z`` with a leading time axis, 0 for a 2D image. Prediction, fine-tuning, review and the
widgets all count slices this way.
"""

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


def slice_count(shape: tuple[int, ...]) -> int:
    """Return the number of 2D slices in an array of ``shape`` (1 for a 2D image).

    Raises
    ------
    ValueError
        If ``shape`` has fewer than two axes.
    """
    if len(shape) < 2:
        raise ValueError(f"expected at least 2 axes, got shape {tuple(shape)}")
    return int(np.prod(shape[:-2], dtype=np.int64))


def slice_index(shape: tuple[int, ...], k: int) -> tuple[int, ...]:
    """Return the leading-axes index of slice ``k`` in an array of ``shape``.

    ``array[slice_index(shape, k)]`` is the (Y, X) slice ``k``; assigning to it writes into
    ``array`` itself, whatever its memory layout.

    Raises
    ------
    IndexError
        If ``k`` is not a slice of ``shape``.
    """
    n = slice_count(shape)
    if not 0 <= int(k) < n:
        raise IndexError(f"slice {k} is outside 0..{n - 1}")
    if len(shape) == 2:
        return ()
    return tuple(int(i) for i in np.unravel_index(int(k), tuple(shape[:-2])))
