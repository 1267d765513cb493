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
    ornt = orientations.ornt_transform(orientations.io_orientation(affine), LPS)
    out = orientations.apply_orientation(arr, ornt)
    new_aff = affine @ orientations.inv_ornt_aff(ornt, arr.shape)
    sizes = clean_sizes(np.sqrt((new_aff[:3, :3] ** 2).sum(axis=0)) * unit)
    p = new_aff[:3, 3] * unit
    spacing = (sizes[2], sizes[1], sizes[0])
    origin = (float(p[2]), float(-p[1]), float(-p[0]))
    return np.ascontiguousarray(out.transpose(2, 1, 0)), ornt, spacing, origin


def from_display(data: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Invert :func:`to_display`: map a ``(z, y, x)`` array back to the source ``(i, j, k)``."""
    ornt = np.asarray(ornt)
    inverse = np.empty_like(ornt)
    for axis, (new_axis, flip) in enumerate(ornt):
        inverse[int(new_axis)] = (axis, flip)
    return orientations.apply_orientation(np.asarray(data).transpose(2, 1, 0), inverse)
