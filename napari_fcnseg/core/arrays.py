"""Images that do not fit in memory: dask, zarr and memory-mapped arrays, read slice by slice.

Segmentation reads one slice (and its neighbours) at a time, so it never needs the whole image
in memory. :func:`is_lazy` tells a lazily loaded array (anything array-like that is not a numpy
array: a ``dask.array.Array``, a ``zarr.Array``, an h5py dataset); :func:`read_slice` reads one
2D slice of it as numpy; :func:`sample_values` draws the voxels the intensity normalisation is
fitted on without reading every chunk. Nothing here imports dask or zarr.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .slices import slice_count, slice_index


class LazyArray(Protocol):
    """What segmentation needs of an image read on demand: shape, dtype and basic indexing."""

    shape: tuple[int, ...]
    dtype: Any
    ndim: int
    size: int

    def __getitem__(self, index: Any) -> Any: ...


#: Slices read to fit the intensity normalisation of a lazy image.
SAMPLE_SLICES = 48
#: Largest number of voxels used for that fit.
MAX_SAMPLES = 2_000_000


def is_lazy(image: Any) -> bool:
    """Whether ``image`` is array-like but not a numpy array (read on demand)."""
    if isinstance(image, np.ndarray):
        return False
    return all(hasattr(image, a) for a in ("shape", "dtype", "ndim", "__getitem__"))


def as_image(image: Any) -> Any:
    """``image`` unchanged when lazy, else as a numpy array."""
    return image if is_lazy(image) else np.asarray(image)


def read_slice(image: Any, k: int) -> np.ndarray:
    """Flat slice ``k`` of ``image`` as a 2D numpy array (computes a dask array's part)."""
    part = image[slice_index(tuple(image.shape), k)]
    if hasattr(part, "compute"):  # dask
        part = part.compute()
    return np.asarray(part)


def read_with_context(image: Any, k: int, context: int) -> np.ndarray:
    """Flat slice ``k`` and ``context`` neighbours each side as a float32 (2c+1, H, W) stack.

    Neighbours come from the same volume of a (..., Z, Y, X) image; at its ends the first or
    last slice repeats (as :func:`~napari_fcnseg.core.slices.stack_slices` does). Only those
    slices are read, so ``image`` may be lazy.
    """
    shape = tuple(image.shape)
    nz = shape[-3] if len(shape) >= 3 else 1
    v, z = divmod(k, nz)
    rows = np.clip(z + np.arange(-context, context + 1), 0, nz - 1)
    return np.stack([read_slice(image, v * nz + int(r)) for r in rows]).astype(np.float32)


def write_slices(out: Any, first: int, block: np.ndarray) -> None:
    """Write consecutive 2D slices ``block`` (B, Y, X) into ``out`` from flat slice ``first``."""
    for i, plane in enumerate(block):
        index = slice_index(tuple(out.shape), first + i)
        out[index if index else ...] = plane


def sample_values(image: Any) -> np.ndarray:
    """Up to :data:`MAX_SAMPLES` voxels of ``image`` as float64, for fitting a normalisation.

    A numpy array is sampled with a regular stride over all its voxels; a lazy one from
    :data:`SAMPLE_SLICES` evenly spaced slices, each strided, so only those slices are read.
    """
    if not is_lazy(image):
        flat = np.asarray(image).reshape(-1)
        step = max(1, flat.size // MAX_SAMPLES)
        return flat[::step].astype(np.float64)
    n = slice_count(tuple(image.shape))
    picks = np.unique(np.linspace(0, n - 1, min(n, SAMPLE_SLICES)).round().astype(int))
    per_slice = max(1, MAX_SAMPLES // len(picks))
    parts = []
    for k in picks:
        flat = read_slice(image, int(k)).reshape(-1)
        parts.append(flat[::max(1, flat.size // per_slice)].astype(np.float64))
    return np.concatenate(parts)
