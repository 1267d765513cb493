"""What every image format shares: the :class:`Volume` record, errors, size checks, writing.

Every reader returns a :class:`Volume` whose ``data`` is ordered the way napari shows it:
``(slice, row, column)`` for volumes and ``(row, column)`` for 2D images. Every write goes to a
temporary file in the destination folder that is renamed over the destination only once
complete. The format modules (:mod:`.tiff`, :mod:`.nifti`, :mod:`.dicom`, ...) build on this
module only; :mod:`.volume` chooses between them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_fcnseg.core.arrays import LazyArray
from napari_fcnseg.core.atomic import atomic_write as core_atomic_write
from napari_fcnseg.core.paths import OutputPathError, check_output_path

#: Largest image (in bytes of pixel data) a reader will load; bigger headers are refused.
MAX_VOLUME_BYTES = 8 * 1024**3



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
    data : numpy.ndarray or array-like
        ``(Z, Y, X)`` for volumes, ``(Y, X)`` for 2D images; for zarr stores the zarr array
        itself, read on demand, and for large uncompressed NIfTI and TIFF files opened with
        :func:`~napari_fcnseg.io.open_volume` a view that reads what it is indexed with.
    spacing : tuple of float
        Voxel size along each axis of ``data`` in millimetres (1.0 where unknown).
    path : Path
        The file or folder that was read.
    format : str
        ``"tiff"``, ``"nifti"``, ``"dicom"`` or ``"zarr"``.
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

    data: np.ndarray | LazyArray
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


def clean_scaling(slope: float, intercept: float) -> tuple[float, float]:
    """Slope and intercept as they apply: a missing (non-finite or zero) slope is 1.

    A missing (non-finite) intercept is 0.
    """
    slope = float(slope) if np.isfinite(slope) and slope != 0 else 1.0
    return slope, float(intercept) if np.isfinite(intercept) else 0.0


def apply_rescale(raw: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Apply ``raw * slope + intercept`` without needless promotion.

    Integer data stay integer when ``slope`` is 1, ``intercept`` is a whole number and the
    result fits the source dtype or int16 (so CT stored as uint16 with intercept -1024 comes
    out as int16 HU); otherwise the result is float32. Float input comes out as float32.
    """
    slope, intercept = clean_scaling(slope, intercept)
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


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
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
