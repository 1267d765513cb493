"""The voxel-grid reorientation shared by the NIfTI and DICOM readers and their label writers.

A 3D source grid ``(i, j, k)`` with a RAS affine is reoriented (flips and axis permutations
only, chosen by :func:`nibabel.orientations.io_orientation`) so that ``i, j, k`` point as
closely as possible to patient Left, Posterior and Superior, then transposed to napari order
``(k, j, i)``. For the usual axial scan this gives (slice inferior to superior, row anterior to
posterior, column right to left), the radiological view. The transform is kept in
``Volume.header["ornt"]`` and inverted by :func:`from_display` when labels are written back,
so they land on the source file's own voxel grid.
"""

from __future__ import annotations

import numpy as np
from nibabel import orientations

LPS = orientations.axcodes2ornt(("L", "P", "S"))
IDENTITY_ORNT = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])


def clean_sizes(sizes: np.ndarray) -> list[float]:
    """Voxel sizes with non-finite or non-positive values replaced by 1.0."""
    return [float(s) if np.isfinite(s) and s > 0 else 1.0 for s in sizes]


def usable_affine(affine: np.ndarray | None, zooms: tuple[float, ...]) -> np.ndarray:
    """``affine`` when finite and invertible, else a plain LPS-aligned one from ``zooms``."""
    if affine is not None and np.all(np.isfinite(affine)):
        if abs(np.linalg.det(affine[:3, :3])) > 1e-12:
            return np.asarray(affine, dtype=float)
    z = clean_sizes(np.asarray(list(zooms) + [1.0, 1.0, 1.0])[:3])
    return np.diag([-z[0], -z[1], z[2], 1.0])


def to_display(
    arr: np.ndarray, affine: np.ndarray, unit: float = 1.0
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...], tuple[float, ...]]:
    """Reorient a 3D ``(i, j, k)`` array to napari ``(z, y, x)`` order in the LPS convention.

    Parameters
    ----------
    arr : numpy.ndarray
        Source array indexed ``(i, j, k)``.
    affine : numpy.ndarray
        Valid 4x4 RAS affine of ``arr``.
    unit : float
        Millimetres per affine unit.

    Returns
    -------
    data : numpy.ndarray
        C-contiguous ``(z, y, x)`` array.
    ornt : numpy.ndarray
        The nibabel orientation transform applied to ``arr`` (before the final transpose).
    spacing : tuple of float
        ``(z, y, x)`` voxel sizes in mm.
    origin : tuple of float
        Position of voxel 0 along ``(z, y, x)`` in mm (superior, posterior, left).
    """
    ornt, spacing, origin = display_geometry(affine, arr.shape, unit)
    out = orientations.apply_orientation(arr, ornt)
    return np.ascontiguousarray(out.transpose(2, 1, 0)), ornt, spacing, origin


def display_geometry(
    affine: np.ndarray, shape: tuple[int, ...], unit: float = 1.0
) -> tuple[np.ndarray, tuple[float, ...], tuple[float, ...]]:
    """What :func:`to_display` does to a 3D array of ``shape``, without the array.

    Returns the orientation transform, the ``(z, y, x)`` voxel sizes in mm and the position of
    voxel 0 in mm (see :func:`to_display`).
    """
    ornt = orientations.ornt_transform(orientations.io_orientation(affine), LPS)
    new_aff = affine @ orientations.inv_ornt_aff(ornt, shape)
    sizes = clean_sizes(np.sqrt((new_aff[:3, :3] ** 2).sum(axis=0)) * unit)
    p = new_aff[:3, 3] * unit
    return ornt, (sizes[2], sizes[1], sizes[0]), (float(p[2]), float(-p[1]), float(-p[0]))


class OrientedArray:
    """A 3D ``(i, j, k)`` source seen in the display order of :func:`to_display`, read on use.

    Only what an index selects is read from ``source`` (a memory map, or nibabel's array
    proxy of an uncompressed file), so a volume larger than memory can be segmented slice by
    slice. Supports indexing with integers and slices, as numpy does.

    Parameters
    ----------
    source : array-like
        Indexed ``(i, j, k)``; indexing it with slices returns only those voxels.
    ornt : numpy.ndarray or None
        The orientation transform of :func:`display_geometry`; None for a source already in
        display order.
    dtype : numpy.dtype
        What reads return (the source's values cast to it).
    """

    def __init__(self, source, ornt: np.ndarray | None, dtype: np.dtype) -> None:
        self._source = source
        src_shape = tuple(int(n) for n in source.shape)
        if ornt is None:
            self._axes, self._flips = list(range(len(src_shape))), [False] * len(src_shape)
        else:  # display axis d <- oriented axis 2 - d <- source axis a with ornt[a, 0] == 2 - d
            by_new = {int(new): (a, flip < 0) for a, (new, flip) in enumerate(np.asarray(ornt))}
            self._axes = [by_new[2 - d][0] for d in range(3)]
            self._flips = [by_new[2 - d][1] for d in range(3)]
        self._src_shape = src_shape
        self.shape = tuple(src_shape[a] for a in self._axes)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(dtype)
        self.size = int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, index) -> np.ndarray:
        selectors = _expand_index(index, self.ndim)
        source_sel: list[int | slice] = [slice(None)] * len(self._src_shape)
        picks: list[tuple[int, np.ndarray]] = []  # display axis kept, positions in its block
        for d, sel in enumerate(selectors):
            a, flip, n = self._axes[d], self._flips[d], self.shape[d]
            if isinstance(sel, slice):
                positions = np.arange(n)[sel]
                if flip:
                    positions = n - 1 - positions
                low = int(positions.min()) if positions.size else 0
                high = int(positions.max()) + 1 if positions.size else 0
                source_sel[a] = slice(low, high)
                picks.append((a, positions - low))
            else:
                i = int(sel) + n if int(sel) < 0 else int(sel)
                if not 0 <= i < n:
                    raise IndexError(f"index {sel} is out of bounds for axis {d} of size {n}")
                source_sel[a] = n - 1 - i if flip else i
        block = np.asarray(self._source[tuple(source_sel)])
        kept = [a for a in range(len(self._src_shape)) if isinstance(source_sel[a], slice)]
        block = block.transpose([kept.index(a) for a, _ in picks])
        for axis, (_, positions) in enumerate(picks):
            if positions.size != block.shape[axis] or np.any(np.diff(positions) != 1):
                block = np.take(block, positions, axis=axis)
        return block.astype(self.dtype, copy=False)


def _expand_index(index, ndim: int) -> list[int | slice]:
    """One integer or slice per axis, for basic numpy indexing (integers, slices, ...)."""
    items = list(index) if isinstance(index, tuple) else [index]
    if any(item is Ellipsis for item in items):
        at = next(i for i, item in enumerate(items) if item is Ellipsis)
        items[at:at + 1] = [slice(None)] * (ndim - len(items) + 1)
    items += [slice(None)] * (ndim - len(items))
    if len(items) != ndim or not all(isinstance(i, slice | int | np.integer) for i in items):
        raise IndexError(f"unsupported index {index!r} (integers and slices only)")
    return items


def from_display(data: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Invert :func:`to_display`: map a ``(z, y, x)`` array back to the source ``(i, j, k)``."""
    ornt = np.asarray(ornt)
    inverse = np.empty_like(ornt)
    for axis, (new_axis, flip) in enumerate(ornt):
        inverse[int(new_axis)] = (axis, flip)
    return orientations.apply_orientation(np.asarray(data).transpose(2, 1, 0), inverse)
