"""The format-independent part of image I/O: the :class:`Volume` record, errors and dispatch.

Every reader returns a :class:`Volume` whose ``data`` is ordered the way napari shows it:
``(slice, row, column)`` for volumes and ``(row, column)`` for 2D images. Volumes with a
known patient orientation (NIfTI, DICOM) are reoriented so that, for the usual axial scan,
axis 0 runs inferior to superior, rows run anterior to posterior and columns run from the
patient's right to left (radiological view, LPS order). Every write goes to a temporary file
in the destination folder that is renamed over the destination only once complete.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_fcnseg.core.atomic import atomic_write as core_atomic_write
from napari_fcnseg.core.paths import OutputPathError, check_output_path

SUPPORTED_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".nii", ".nii.gz", ".dcm")

#: Largest image (in bytes of pixel data) a reader will load; bigger headers are refused.
MAX_VOLUME_BYTES = 8 * 1024**3

_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_BY_SUFFIX = {".tif": "tiff", ".tiff": "tiff", ".nii": "nifti", ".nii.gz": "nifti", ".dcm": "dicom"}


class _PathError(ValueError):
    """A ValueError whose message starts with the file concerned, when given."""

    _verb = "read"

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        super().__init__(message if path is None else f"Cannot {self._verb} '{path}': {message}")


class ImageReadError(_PathError):
    """An image could not be read: ``ImageReadError(message, path)`` names the file."""


class ImageWriteError(_PathError):
    """An image could not be written: ``ImageWriteError(message, path)`` names the file."""

    _verb = "write"


@dataclass
class Volume:
    """An image loaded from disk, in napari axis order.

    Attributes
    ----------
    data : numpy.ndarray
        ``(Z, Y, X)`` for volumes, ``(Y, X)`` for 2D images.
    spacing : tuple of float
        Voxel size along each axis of ``data`` in millimetres (1.0 where unknown).
    path : Path
        The file or folder that was read.
    format : str
        ``"tiff"``, ``"nifti"`` or ``"dicom"``.
    modality : str or None
        DICOM Modality (``"CT"``, ``"MR"``, ...), None when unknown.
    affine : numpy.ndarray or None
        4x4 RAS affine of the source voxel grid (for NIfTI the affine of the file on disk;
        for DICOM the equivalent NIfTI affine of the slice stack).
    header : Any
        Format-specific information used by :func:`write_labels` to put labels back on the
        source grid. For NIfTI and DICOM a dict with ``"ornt"`` (the nibabel orientation
        transform from the source grid to the displayed one), ``"source_shape"``,
        ``"is_2d"`` and, for NIfTI, ``"nifti_header"``.
    series : list of dict
        DICOM only: every series found (``uid``, ``description``, ``n_slices``,
        ``modality``), the one loaded first.
    origin : tuple of float or None
        Position of voxel 0 along each axis of ``data`` in millimetres, when known.
    """

    data: np.ndarray
    spacing: tuple[float, ...]
    path: Path
    format: str
    modality: str | None = None
    affine: np.ndarray | None = None
    header: Any = None
    series: list[dict] = field(default_factory=list)
    origin: tuple[float, ...] | None = None


def full_suffix(path: str | Path) -> str:
    """Lower-case suffix of ``path``, treating ``.nii.gz`` as one suffix."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def human_bytes(n: float) -> str:
    """Format a byte count such as ``1.5 GiB``."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    power = min(int(math.log(max(n, 1), 1024)), len(units) - 1)
    return f"{n:.0f} bytes" if power == 0 else f"{n / 1024**power:.1f} {units[power]}"


def check_size(path: Path, shape: tuple[int, ...], itemsize: int, available: int | None) -> None:
    """Refuse an absurd image size before anything is allocated.

    Raises :class:`ImageReadError` naming ``path`` when ``shape`` x ``itemsize`` bytes exceed
    :data:`MAX_VOLUME_BYTES` or the ``available`` bytes the file can hold (None: unknown).
    """
    dims = " x ".join(str(int(n)) for n in shape)
    if any(int(n) < 0 for n in shape):
        raise ImageReadError(f"the header gives a negative image size ({dims})", path)
    nbytes = int(np.prod([int(n) for n in shape], dtype=object)) * int(itemsize)
    if nbytes > MAX_VOLUME_BYTES:
        raise ImageReadError(
            f"the header claims a {dims} image ({human_bytes(nbytes)}), more than the "
            f"{human_bytes(MAX_VOLUME_BYTES)} limit; the header is probably corrupt",
            path,
        )
    if available is not None and nbytes > available:
        raise ImageReadError(
            f"the file is truncated or corrupt: the header claims a {dims} image "
            f"({human_bytes(nbytes)}) but the file holds at most {human_bytes(available)}",
            path,
        )


def apply_rescale(raw: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Apply ``raw * slope + intercept`` without needless promotion.

    Integer data stay integer when ``slope`` is 1, ``intercept`` is a whole number and the
    result fits the source dtype or int16 (so CT stored as uint16 with intercept -1024 comes
    out as int16 HU); otherwise the result is float32. Float input comes out as float32.
    """
    slope = float(slope) if np.isfinite(slope) and slope != 0 else 1.0
    intercept = float(intercept) if np.isfinite(intercept) else 0.0
    if raw.dtype.kind == "b":
        raw = raw.astype(np.uint8)
    trivial = slope == 1.0 and intercept == 0.0
    if raw.dtype.kind in "iu" and trivial:
        return raw
    if raw.dtype.kind in "iu" and slope == 1.0 and intercept.is_integer() and raw.size:
        lo, hi = int(raw.min()) + int(intercept), int(raw.max()) + int(intercept)
        for dtype in (raw.dtype, np.dtype(np.int16)):
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                out = raw.astype(dtype, copy=True)
                if intercept > 0:
                    out += dtype.type(int(intercept))
                else:
                    out -= dtype.type(-int(intercept))
                return out
    out = raw.astype(np.float32, copy=not trivial)  # never modify the caller's array
    if not trivial:
        out *= np.float32(slope)
        out += np.float32(intercept)
    return out


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it to ``path``.

    On any failure the temporary file is removed and ``path`` is left as it was.

    Raises
    ------
    ImageWriteError
        When the destination folder is missing, ``path`` is a folder, or writing fails.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ImageWriteError(f"the folder '{path.parent}' does not exist", path)
    if path.is_dir():
        raise ImageWriteError("a folder with that name exists", path)
    try:
        check_output_path(path)
    except OutputPathError as exc:
        raise ImageWriteError(str(exc).removeprefix(f"{path}: "), path) from None
    try:
        core_atomic_write(path, write)
    except ImageWriteError:
        raise
    except Exception as exc:
        raise ImageWriteError(f"{type(exc).__name__}: {exc}", path) from exc
    return path


def check_labels(labels: Any, like: Volume | None, path: Path) -> np.ndarray:
    """Validate a label image and return it as uint8 (or uint16 when values exceed 255)."""
    labels = np.asarray(labels)
    if labels.dtype.kind == "b":
        labels = labels.astype(np.uint8)
    if labels.dtype.kind not in "iu":
        raise ImageWriteError(f"labels must be integers, got {labels.dtype}", path)
    if labels.ndim not in (2, 3):
        raise ImageWriteError(f"labels must be 2D or 3D, got shape {labels.shape}", path)
    if like is not None and labels.shape != like.data.shape:
        raise ImageWriteError(
            f"labels shape {labels.shape} does not match the image shape {like.data.shape}", path
        )
    if labels.size == 0:
        raise ImageWriteError("labels are empty", path)
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi > 65535:
        raise ImageWriteError(f"label values must lie in 0..65535, got {lo}..{hi}", path)
    return labels.astype(np.uint8 if hi <= 255 else np.uint16, copy=False)


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
    """Return ``"tiff"``, ``"nifti"``, ``"dicom"`` or None for an existing path."""
    if path.is_dir():
        return "dicom"
    return _BY_SUFFIX.get(full_suffix(path)) or _sniff(path)


def read_volume(path: str | Path, series_uid: str | None = None) -> Volume:
    """Read a TIFF, NIfTI or DICOM image.

    Parameters
    ----------
    path : str or Path
        A ``.tif``/``.tiff``, ``.nii``/``.nii.gz`` or DICOM file, or a folder of DICOM files.
    series_uid : str, optional
        DICOM only: the SeriesInstanceUID to load (default: the series of the given file,
        or the series with the most slices when a folder is given).

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
        # format modules are imported on first use: importing this package stays cheap
        reader = getattr(importlib.import_module(f"napari_fcnseg.io.{kind}"), f"read_{kind}")
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
    raise ImageWriteError("labels can be written as .nii, .nii.gz, .tif, .tiff or .dcm (DICOM "
                          "SEG) only", path)


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

            return folder_has_dicom(path)
        if path.exists() and not path.is_file():  # a pipe named x.tif would block the reader
            return False
        if full_suffix(path) in SUPPORTED_SUFFIXES:
            return True
        return path.is_file() and _sniff(path) is not None
    except (OSError, ValueError, TypeError):
        return False
