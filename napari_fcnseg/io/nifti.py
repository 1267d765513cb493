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

from napari_fcnseg.io.base import (
    ImageReadError,
    Volume,
    apply_rescale,
    check_size,
    clean_scaling,
    full_suffix,
)
from napari_fcnseg.io.orientation import (
    IDENTITY_ORNT,
    OrientedArray,
    clean_sizes,
    display_geometry,
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


def _checked_header(path: Path) -> tuple[nib.Nifti1Image, tuple[int, ...], tuple[int, ...],
                                          ArrayProxy]:
    """Open ``path`` and check its header: (image, stored shape, 2D/3D shape, data proxy)."""
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
    return img, shape, core, proxy


def open_nifti_streamed(path: Path) -> Volume | None:
    """Open an uncompressed 3D ``.nii`` file to be read slice by slice, as it is used.

    The volume's data are an :class:`~napari_fcnseg.io.orientation.OrientedArray` in the
    orientation :func:`read_nifti` gives, with the same voxel size, origin and geometry;
    values are scaled (``scl_slope``/``scl_inter``) as they are read, to float32 unless the
    scaling is trivial. Returns None for files that cannot be read in parts cheaply (``.nii.gz``)
    or are 2D (small): read those with :func:`read_nifti`.

    Raises
    ------
    ImageReadError
        Where :func:`read_nifti` refuses the header.
    """
    path = Path(path)
    if full_suffix(path) != ".nii":
        return None
    img, shape, core, proxy = _checked_header(path)
    if len(core) != 3:
        return None
    hdr = img.header
    dtype = np.dtype(hdr.get_data_dtype())
    trivial = clean_scaling(float(proxy.slope), float(proxy.inter)) == (1.0, 0.0)
    out_dtype: np.dtype
    if dtype.kind == "b":
        out_dtype = np.dtype(np.uint8)
    elif dtype.kind in "iu" and trivial:
        out_dtype = dtype
    else:
        out_dtype = np.dtype(np.float32)
    unit = _UNIT_MM.get(hdr.get_xyzt_units()[0], 1.0)
    zooms = tuple(float(z) for z in hdr.get_zooms()[:3])
    affine = usable_affine(img.affine, zooms)
    ornt, spacing, origin = display_geometry(affine, core, unit)
    extra = (0,) * (len(shape) - 3)  # trailing singleton axes of the stored shape
    source = _Trailing(proxy, core, extra) if extra else proxy
    geometry = {"nifti_header": hdr.copy(), "source_shape": shape, "is_2d": False, "ornt": ornt}
    return Volume(
        data=OrientedArray(source, ornt, out_dtype),
        spacing=spacing,
        path=path,
        format="nifti",
        affine=None if img.affine is None else np.array(img.affine, dtype=float),
        header=geometry,
        origin=origin,
    )


class _Trailing:
    """A 3D view of a proxy stored with trailing singleton axes (x, y, z, 1, ...)."""

    def __init__(self, proxy: ArrayProxy, core: tuple[int, ...], extra: tuple[int, ...]) -> None:
        self._proxy, self.shape, self._extra = proxy, core, extra

    def __getitem__(self, index: tuple) -> np.ndarray:
        return np.asarray(self._proxy[tuple(index) + self._extra])


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
    img, shape, core, proxy = _checked_header(path)
    hdr = img.header
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
