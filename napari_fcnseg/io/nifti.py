"""NIfTI-1/NIfTI-2 reading and label writing.

3D volumes are reoriented to the radiological view by :mod:`~napari_fcnseg.io.orientation`
(the transform is kept in ``Volume.header["ornt"]`` and inverted when labels are written back,
so they land on the source file's own voxel grid). 2D images are shown as stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
from nibabel.arrayproxy import ArrayProxy

from napari_fcnseg.io.base import ImageReadError, Volume, apply_rescale, check_size, full_suffix
from napari_fcnseg.io.orientation import (
    IDENTITY_ORNT,
    clean_sizes,
    from_display,
    to_display,
    usable_affine,
)

# deflate cannot compress better than about 1032:1
_GZIP_MAX_RATIO = 1100
_UNIT_MM = {"mm": 1.0, "meter": 1000.0, "micron": 1e-3}


def _load(path: Path) -> nib.Nifti1Image:
    """Open the header, refusing anything that is not a NIfTI image."""
    try:
        img = nib.load(str(path), mmap=False)
    except Exception as exc:
        raise ImageReadError(f"not a valid NIfTI file ({exc})", path) from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise ImageReadError(f"not a NIfTI image (read as {type(img).__name__})", path)
    return img


def _core_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The 2D/3D shape with trailing singleton dimensions dropped; refuse time series."""
    if len(shape) > 3 and any(n != 1 for n in shape[3:]):
        raise ImageReadError(
            f"4D NIfTI (time series) is not supported: the image has shape {shape}; "
            "extract one volume first",
            path,
        )
    core = tuple(shape[:3])
    if len(core) < 2:
        raise ImageReadError(f"a {len(core)}D NIfTI image (shape {shape}) is not an image", path)
    return core


def read_nifti(path: Path) -> Volume:
    """Read a ``.nii`` / ``.nii.gz`` file into a :class:`Volume`.

    Scaling (``scl_slope``/``scl_inter``) is applied; integer data stay integer when the
    scaling allows it, otherwise the result is float32. Float data come out as float32.

    Raises
    ------
    ImageReadError
        Corrupt, truncated or oversized files, colour or complex data, 4D/5D series.
    """
    path = Path(path)
    img = _load(path)
    hdr = img.header
    try:
        shape = tuple(int(n) for n in hdr.get_data_shape())
        dtype = np.dtype(hdr.get_data_dtype())
        proxy = cast(ArrayProxy, img.dataobj)  # nibabel types it as a plain array-like
        offset = int(proxy.offset)
    except Exception as exc:
        raise ImageReadError(f"the NIfTI header is corrupt ({exc})", path) from exc
    if dtype.fields is not None:
        raise ImageReadError("colour (RGB) NIfTI images are not supported", path)
    if dtype.kind not in "biuf":
        raise ImageReadError(f"NIfTI data of type {dtype} are not supported", path)
    core = _core_shape(path, shape)
    size = path.stat().st_size
    if full_suffix(path) == ".nii.gz":
        available = size * _GZIP_MAX_RATIO
    else:
        available = max(size - offset, 0)
    check_size(path, shape, dtype.itemsize, available)
    try:
        raw = np.asanyarray(proxy.get_unscaled())
        slope, inter = float(proxy.slope), float(proxy.inter)
    except MemoryError as exc:
        raise ImageReadError("not enough memory to load the image", path) from exc
    except Exception as exc:
        raise ImageReadError(f"the file is truncated or corrupt ({exc})", path) from exc
    raw = np.asarray(raw).reshape(core)
    data = apply_rescale(raw, slope, inter)
    del raw

    unit = _UNIT_MM.get(hdr.get_xyzt_units()[0], 1.0)
    zooms = tuple(float(z) for z in hdr.get_zooms()[:3])
    affine = usable_affine(img.affine, zooms)
    geometry = {"nifti_header": hdr.copy(), "source_shape": shape, "is_2d": len(core) == 2}
    spacing: tuple[float, ...]
    if len(core) == 2:
        sizes = clean_sizes(np.sqrt((affine[:3, :2] ** 2).sum(axis=0)) * unit)
        geometry["ornt"] = IDENTITY_ORNT[:2].copy()
        display, spacing, origin = np.ascontiguousarray(data.T), (sizes[1], sizes[0]), None
    else:
        display, geometry["ornt"], spacing, origin = to_display(data, affine, unit)
    affine_out = None if img.affine is None else np.array(img.affine, dtype=float)
    return Volume(
        data=display,
        spacing=spacing,
        path=path,
        format="nifti",
        affine=affine_out,
        header=geometry,
        origin=origin,
    )


def _plain_affine(spacing: tuple[float, ...], origin: tuple[float, ...] | None) -> np.ndarray:
    """RAS affine of the ``(x, y, z)`` transpose of an LPS-ordered ``(z, y, x)`` array."""
    sz, sy, sx = (1.0, *spacing) if len(spacing) == 2 else spacing
    oz, oy, ox = (0.0, 0.0, 0.0) if origin is None or len(origin) != 3 else origin
    aff = np.diag([-float(sx), -float(sy), float(sz), 1.0])
    aff[:3, 3] = (-ox, -oy, oz)
    return aff


def write_nifti_labels(path: Path, labels: np.ndarray, like: Volume | None) -> None:
    """Write ``labels`` (napari order, uint8/uint16) as NIfTI to ``path`` (non-atomic).

    With a NIfTI or DICOM ``like`` the labels are mapped back onto the source voxel grid and
    written with the source affine (and, for NIfTI, the source header with its qform/sform
    codes); otherwise the array is written with an axis-aligned affine from ``like.spacing``.
    """
    geometry = like.header if like is not None and isinstance(like.header, dict) else None
    if like is not None and geometry is not None and "ornt" in geometry and like.affine is not None:
        if geometry.get("is_2d"):
            arr = labels.T
        else:
            arr = from_display(labels, geometry["ornt"])
        arr = np.ascontiguousarray(arr).reshape(geometry["source_shape"])
        src_hdr = geometry.get("nifti_header")
        if src_hdr is not None:
            cls = nib.Nifti2Image if isinstance(src_hdr, nib.Nifti2Header) else nib.Nifti1Image
            hdr = src_hdr.copy()
            hdr.set_slope_inter(np.nan, np.nan)
            hdr["cal_min"], hdr["cal_max"] = 0, 0
            img = cls(arr, like.affine, header=hdr)
        else:
            img = nib.Nifti1Image(arr, like.affine)
            img.set_qform(like.affine, code=1)
            img.set_sform(like.affine, code=1)
            img.header.set_xyzt_units("mm")
    else:
        spacing = like.spacing if like is not None else (1.0,) * labels.ndim
        origin = like.origin if like is not None and labels.ndim == 3 else None
        img = nib.Nifti1Image(np.ascontiguousarray(labels.T), _plain_affine(spacing, origin))
        img.header.set_xyzt_units("mm")
    img.set_data_dtype(labels.dtype)
    nib.save(img, str(path))
