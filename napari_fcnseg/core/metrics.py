"""Overlap metrics between a prediction and a reference label map."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def dice_per_class(pred: np.ndarray, ref: np.ndarray, num_classes: int | None = None) -> dict:
    """Dice coefficient of every foreground class.

    Parameters
    ----------
    pred, ref : numpy.ndarray
        Integer label maps of the same shape.
    num_classes : int, optional
        Classes 1..num_classes-1 are scored; default: every label present in either map.

    Returns
    -------
    dict
        ``{class: dice}``; a class absent from both maps scores 1.0 (nothing to find,
        nothing found).

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference {ref.shape}")
    counts = voxel_counts(pred, ref, num_classes)
    return {c: (2 * inter / total if total else 1.0) for c, (inter, total, _, _) in counts.items()}


def voxel_counts(pred: np.ndarray, ref: np.ndarray, num_classes: int | None = None) -> dict:
    """Return ``{class: (intersection, pred + ref voxels, pred voxels, ref voxels)}``.

    Uses one joint histogram, so it reads each array once whatever the class count.
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference {ref.shape}")
    p, r = pred.astype(np.int64, copy=False).ravel(), ref.astype(np.int64, copy=False).ravel()
    if p.size and (p.min() < 0 or r.min() < 0):
        raise ValueError("label maps must not contain negative values")
    top = int(max(p.max(initial=0), r.max(initial=0)))
    if top < 1024:  # the usual case: one joint histogram straight over the values
        values = np.arange(top + 1)
        k = top + 1
        joint = np.bincount(p * k + r, minlength=k * k).reshape(k, k)
    else:  # over the values present only: a label of 40000 must not allocate 40000**2 counters
        values, codes = np.unique(np.concatenate([p, r]), return_inverse=True)
        k = len(values)
        joint = np.bincount(codes[:p.size] * k + codes[p.size:], minlength=k * k).reshape(k, k)
    classes = range(1, num_classes) if num_classes else [int(v) for v in values if v > 0]
    if num_classes is None and top < 1024:
        classes = range(1, top + 1)
    index = {int(v): i for i, v in enumerate(values)}
    out = {}
    for c in classes:
        i = index.get(int(c))
        if i is None:
            out[c] = (0, 0, 0, 0)
            continue
        inter = int(joint[i, i])
        np_, nr = int(joint[i].sum()), int(joint[:, i].sum())
        out[c] = (inter, np_ + nr, np_, nr)
    return out


def class_volumes(labels: np.ndarray, spacing: tuple[float, ...] | None = None,
                  names: list[str] | None = None) -> list[dict]:
    """Voxel count, volume in mL and number of connected parts of every foreground class.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label map (2D or 3D).
    spacing : tuple of float, optional
        Voxel size in mm per axis; without it volumes are not reported (None).
    names : list of str, optional
        Class names by label value; other values are named "class N".

    Returns
    -------
    list of dict
        One row per label value present (and per named class), ascending: ``value``, ``name``,
        ``voxels``, ``ml`` (None without ``spacing``) and ``components`` (connected parts,
        face-and-edge connectivity, e.g. the number of lesions; None for labels read from
        disk on demand, which are counted slice by slice and never loaded whole).
    """
    from scipy import ndimage

    from .arrays import is_lazy

    if np.dtype(labels.dtype).kind not in "iub":
        raise ValueError(f"labels must be integers, not {labels.dtype}")
    if is_lazy(labels):  # one slice in memory at a time; parts need the whole volume
        return _volume_rows(_streamed_counts(labels), None, spacing, len(labels.shape), names)
    labels = np.asarray(labels)
    values, found = np.unique(labels, return_counts=True)
    counts = np.zeros(int(values.max(initial=0)) + 1, np.int64)
    counts[values[values > 0]] = found[values > 0]
    structure = ndimage.generate_binary_structure(labels.ndim, 2)
    objects = ndimage.find_objects(labels.astype(np.int64, copy=False)) if counts.any() else []

    def parts(v: int) -> int:
        return int(ndimage.label(labels[objects[v - 1]] == v, structure)[1])

    return _volume_rows(counts, parts, spacing, labels.ndim, names)


def _streamed_counts(labels) -> np.ndarray:
    """Voxels per label value of a dask or zarr array, read one slice at a time."""
    from .arrays import read_slice
    from .slices import slice_count

    counts = np.zeros(0, np.int64)
    for k in range(slice_count(tuple(labels.shape))):
        plane = read_slice(labels, k).astype(np.int64, copy=False).ravel()
        if plane.size and plane.min() < 0:
            raise ValueError("labels must not be negative")
        found = np.bincount(plane)
        if found.size > counts.size:
            counts = np.pad(counts, (0, found.size - counts.size))
        counts[: found.size] += found
    return counts


def _volume_rows(counts: np.ndarray, parts: Callable[[int], int] | None,
                 spacing: tuple[float, ...] | None, ndim: int,
                 names: list[str] | None) -> list[dict]:
    """The rows of :func:`class_volumes` from the voxel count of each label value.

    ``parts(value)`` counts the connected parts of a value that is present; None: not counted.
    """
    present = [v for v in range(1, counts.size) if counts[v]]
    voxel_ml = None
    if spacing is not None:
        voxel_ml = float(np.prod(np.asarray(spacing, float)[-ndim:])) / 1000.0
    rows = []
    for v in sorted(set(present) | set(range(1, len(names or [])))):
        voxels = int(counts[v]) if v < counts.size else 0
        rows.append({"value": v, "name": names[v] if names and v < len(names) else f"class {v}",
                     "voxels": voxels,
                     "ml": None if voxel_ml is None else round(voxels * voxel_ml, 3),
                     "components": None if parts is None else parts(v) if voxels else 0})
    return rows
