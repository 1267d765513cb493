"""Choosing the format: reading and writing any supported image through one call.

:func:`read_volume` finds the reader by suffix (or the first bytes of the file) in
:data:`READERS` and returns a :class:`~napari_fcnseg.io.base.Volume` in napari axis order.
Volumes with a known patient orientation (NIfTI, DICOM) are reoriented so that, for the usual
axial scan, axis 0 runs inferior to superior, rows run anterior to posterior and columns run
from the patient's right to left (radiological view, LPS order). The format modules import
only :mod:`~napari_fcnseg.io.base` and :mod:`~napari_fcnseg.io.orientation`, never this one.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from napari_fcnseg.io.base import (
    ImageReadError,
    ImageWriteError,
    Volume,
    atomic_write,
    check_labels,
    full_suffix,
)

SUPPORTED_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".nii", ".nii.gz", ".dcm", ".zarr")

_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_BY_SUFFIX = {".tif": "tiff", ".tiff": "tiff", ".nii": "nifti", ".nii.gz": "nifti", ".dcm": "dicom"}

#: The reader of each format: (module, function), imported on first use so that importing
#: the package stays cheap. Each function takes the path (and DICOM a ``series_uid``) and
#: returns a :class:`~napari_fcnseg.io.base.Volume`.
READERS: dict[str, tuple[str, str]] = {
    "tiff": ("napari_fcnseg.io.tiff", "read_tiff"),
    "nifti": ("napari_fcnseg.io.nifti", "read_nifti"),
    "dicom": ("napari_fcnseg.io.dicom", "read_dicom"),
    "zarr": ("napari_fcnseg.io.zarr_io", "read_zarr"),
}
#: Readers that leave the pixels on disk, read as they are indexed; each returns None for a
#: file it cannot read in parts (compressed, say), which :data:`READERS` then reads whole.
STREAMED_READERS: dict[str, tuple[str, str]] = {
    "tiff": ("napari_fcnseg.io.tiff", "open_tiff_streamed"),
    "nifti": ("napari_fcnseg.io.nifti", "open_nifti_streamed"),
}


def _sniff(path: Path) -> str | None:
    """Guess a format from the first bytes of a file without a known suffix."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(352)
    except OSError:
        return None
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:4] in _TIFF_MAGICS:
        return "tiff"
    return None


def detect_format(path: Path) -> str | None:
    """Return ``"tiff"``, ``"nifti"``, ``"dicom"``, ``"zarr"`` or None for an existing path."""
    if path.is_dir():
        from napari_fcnseg.io.zarr_io import is_zarr

        return "zarr" if is_zarr(path) else "dicom"
    return _BY_SUFFIX.get(full_suffix(path)) or _sniff(path)


def read_volume(path: str | Path, series_uid: str | None = None, *,
                streamed: bool = False) -> Volume:
    """Read a TIFF, NIfTI or DICOM image.

    Parameters
    ----------
    path : str or Path
        A ``.tif``/``.tiff``, ``.nii``/``.nii.gz`` or DICOM file, or a folder of DICOM files.
    series_uid : str, optional
        DICOM only: the SeriesInstanceUID to load (default: the series of the given file,
        or the series with the most slices when a folder is given).
    streamed : bool
        Leave the pixels on disk where the format allows (uncompressed 3D NIfTI and TIFF
        stacks; zarr stores always): ``data`` is then read only as it is indexed, a few slices
        at a time when segmenting, so the image may be larger than memory.

    Returns
    -------
    Volume
        The image in napari axis order.

    Raises
    ------
    ImageReadError
        For any problem; the message names the file. No other exception escapes.
    """
    path = Path(path)
    try:
        if not path.exists():
            raise ImageReadError("no such file or folder", path)
        if path.is_file() and path.stat().st_size == 0:
            raise ImageReadError("the file is empty", path)
        kind = detect_format(path)
        if kind is None:
            wanted = ", ".join(SUPPORTED_SUFFIXES)
            raise ImageReadError(f"unsupported file type (expected {wanted} or DICOM)", path)
        vol = None
        if streamed and kind in STREAMED_READERS:
            module, function = STREAMED_READERS[kind]
            vol = getattr(importlib.import_module(module), function)(path)
        if vol is None:
            module, function = READERS[kind]
            reader = getattr(importlib.import_module(module), function)
            vol = reader(path, series_uid=series_uid) if kind == "dicom" else reader(path)
    except ImageReadError:
        raise
    except MemoryError as exc:
        raise ImageReadError("not enough memory to load the image", path) from exc
    except Exception as exc:
        raise ImageReadError(
            f"unreadable or corrupt file ({type(exc).__name__}: {exc})", path
        ) from exc
    if vol.data.size == 0:
        raise ImageReadError(f"the image has no voxels (shape {vol.data.shape})", path)
    return vol


def write_labels(path: str | Path, labels: np.ndarray, like: Volume | None = None, *,
                 class_names: list[str] | None = None, model_name: str = "",
                 software_version: str = "") -> Path:
    """Write a label image as NIfTI (on ``like``'s voxel grid), ImageJ TIFF or DICOM SEG.

    Parameters
    ----------
    path : str or Path
        Destination; ``.nii``/``.nii.gz`` writes NIfTI, ``.tif``/``.tiff`` TIFF, ``.dcm`` a
        DICOM SEG object (``like`` must then be a DICOM series; see
        :mod:`napari_fcnseg.io.dicom_seg`).
    labels : numpy.ndarray
        Non-negative integer labels with the shape of ``like.data``.
    like : Volume, optional
        The image the labels belong to. NIfTI output reuses its affine and header (or the
        DICOM geometry) so the labels overlay the source; TIFF output records its spacing.
    class_names, model_name, software_version : optional
        Segment names and the algorithm identification of a DICOM SEG.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ImageWriteError
        Bad labels, unsupported suffix, missing folder or a failed write.
    """
    path = Path(path)
    arr = check_labels(labels, like, path)
    suffix = full_suffix(path)
    if suffix == ".dcm":
        from napari_fcnseg.io.dicom_seg import write_dicom_seg

        return write_dicom_seg(path, arr, like, class_names, model_name, software_version)
    if suffix in (".nii", ".nii.gz"):
        from napari_fcnseg.io.nifti import write_nifti_labels

        return atomic_write(path, lambda tmp: write_nifti_labels(tmp, arr, like))
    if suffix in (".tif", ".tiff"):
        from napari_fcnseg.io.tiff import write_tiff

        spacing = None if like is None else like.spacing
        return atomic_write(path, lambda tmp: write_tiff(tmp, arr, spacing))
    if suffix == ".zarr":
        from napari_fcnseg.io.zarr_io import write_zarr_labels

        return write_zarr_labels(path, arr, like, class_names)
    raise ImageWriteError("labels can be written as .nii, .nii.gz, .tif, .tiff, .zarr or .dcm "
                          "(DICOM SEG) only", path)


def write_image(
    path: str | Path, data: np.ndarray, spacing: tuple[float, ...] | None = None
) -> Path:
    """Write a 2D or 3D grayscale image as an ImageJ-compatible TIFF recording ``spacing``.

    uint8, uint16, int16 and float32 data (and bool, int8, float16, converted losslessly)
    are written as ImageJ TIFF; other dtypes as OME-TIFF so no value is lost.

    Raises
    ------
    ImageWriteError
        Unsupported suffix, bad data or spacing, missing folder or a failed write.
    """
    path = Path(path)
    if full_suffix(path) not in (".tif", ".tiff"):
        raise ImageWriteError("images can be written as .tif or .tiff only", path)
    from napari_fcnseg.io.tiff import prepare_image, write_tiff

    arr, sizes = prepare_image(data, spacing, path)
    return atomic_write(path, lambda tmp: write_tiff(tmp, arr, sizes))


def is_supported(path: str | Path) -> bool:
    """Cheaply tell whether ``path`` looks like something :func:`read_volume` can open."""
    try:
        path = Path(path)
        if path.is_dir():
            from napari_fcnseg.io.dicom import folder_has_dicom
            from napari_fcnseg.io.zarr_io import is_zarr

            return is_zarr(path) or folder_has_dicom(path)
        if path.exists() and not path.is_file():  # a pipe named x.tif would block the reader
            return False
        if full_suffix(path) in SUPPORTED_SUFFIXES:
            return True
        return path.is_file() and _sniff(path) is not None
    except (OSError, ValueError, TypeError):
        return False
