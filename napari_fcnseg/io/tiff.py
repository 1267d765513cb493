"""Grayscale TIFF stacks: reading (ImageJ, OME or plain) and ImageJ-compatible writing.

Voxel size comes from ImageJ metadata (``spacing`` plus the X/YResolution tags, in the
ImageJ ``unit``) or from OME ``PhysicalSize*`` attributes, converted to millimetres; it is
1.0 when the file records none. Colour and multi-channel files are refused.
"""

from __future__ import annotations

import logging
import math
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import tifffile

from napari_fcnseg.io.base import ImageReadError, ImageWriteError, Volume, check_size
from napari_fcnseg.io.orientation import OrientedArray

# photometric interpretations that mean colour: RGB, CMYK, YCbCr, CIELab, ICCLab, ITULab
_COLOUR = {2, 5, 6, 8, 9, 10}
_IMAGEJ_DTYPES = tuple(np.dtype(d) for d in (np.uint8, np.uint16, np.int16, np.float32))
_WIDEN = {np.dtype(bool): np.uint8, np.dtype(np.int8): np.int16, np.dtype(np.float16): np.float32}
_UNIT_MM = {
    "mm": 1.0, "millimeter": 1.0, "millimetre": 1.0, "cm": 10.0, "centimeter": 10.0,
    "m": 1000.0, "meter": 1000.0, "metre": 1000.0, "um": 1e-3, "\u00b5m": 1e-3,
    "\u03bcm": 1e-3, "\\u00b5m": 1e-3, "micron": 1e-3, "microns": 1e-3,
    "micrometer": 1e-3, "nm": 1e-6, "nanometer": 1e-6, "inch": 25.4, "in": 25.4,
}  # fmt: skip


class _Errors(logging.Handler):
    """Collects the damage tifffile logs (and works around) while this thread reads a file."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.ERROR)
        self.path, self.thread = path, threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())

    def check(self) -> None:
        """Raise when tifffile reported the file damaged (truncated, bad offsets, ...)."""
        if self.messages:
            raise ImageReadError(f"the file is damaged ({self.messages[0]})", self.path)


def _size(value: Any, factor: float = 1.0) -> float | None:
    """A positive finite length in mm, or None."""
    try:
        size = float(value) * factor
    except (TypeError, ValueError, OverflowError):
        return None
    return size if math.isfinite(size) and size > 0 else None


def _resolution(page: tifffile.TiffPage, name: str) -> float | None:
    """Pixel size (1 / resolution) from an X/YResolution tag, in the file's unit."""
    tag = page.tags.get(name)
    if tag is None:
        return None
    try:
        num, den = tag.value
        return _size(den / num) if num and den else None
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        return None


def _imagej_sizes(meta: dict, page: tifffile.TiffPage) -> dict[str, float]:
    """X/Y/Z voxel sizes in mm from ImageJ metadata and the resolution tags."""
    unit = str(meta.get("unit", "")).strip().lower()
    if unit in ("pixel", "pixels"):
        return {}
    factor = _UNIT_MM.get(unit, 1.0)
    raw = {"X": _resolution(page, "XResolution"), "Y": _resolution(page, "YResolution")}
    raw["Z"] = _size(meta.get("spacing"))
    return {k: v * factor for k, v in raw.items() if v is not None}


def _ome_sizes(xml: str) -> dict[str, float]:
    """X/Y/Z voxel sizes in mm from OME-XML ``Pixels`` attributes (default unit µm)."""
    root = ET.fromstring(xml)
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] != "Pixels":
            continue
        sizes = {}
        for axis in "XYZ":
            unit = element.get(f"PhysicalSize{axis}Unit", "\u00b5m").strip().lower()
            size = _size(element.get(f"PhysicalSize{axis}"), _UNIT_MM.get(unit, 1e-3))
            if size is not None:
                sizes[axis] = size
        return sizes
    return {}


def _spacing(tf: tifffile.TiffFile, page: tifffile.TiffPage, ndim: int) -> tuple[float, ...]:
    """Voxel size for a 2D ``(Y, X)`` or 3D ``(slice, Y, X)`` image."""
    sizes: dict[str, float] = {}
    try:
        if tf.is_ome and tf.ome_metadata:
            sizes = _ome_sizes(tf.ome_metadata)
        elif tf.is_imagej:
            sizes = _imagej_sizes(tf.imagej_metadata or {}, page)
    except (ET.ParseError, ValueError, TypeError, AttributeError):
        sizes = {}
    spacing = (sizes.get("Z", 1.0), sizes.get("Y", 1.0), sizes.get("X", 1.0))
    return spacing[-ndim:]


class _Layout(NamedTuple):
    """What the header says :func:`read_tiff` will return for the first series."""

    shape: tuple[int, ...]  # the volume's: the series' without its length-1 axes
    spacing: tuple[float, ...]


def _layout(tf: tifffile.TiffFile, path: Path) -> _Layout:
    """Apply the rules of :func:`read_tiff` to the header alone; no pixel data is read.

    Raises
    ------
    ImageReadError
        No image, an unsupported pixel type, colour or multi-channel, not 2D/3D, image data
        past the end of the file or an absurd size: wherever :func:`read_tiff` refuses.
    """
    if not tf.series:
        raise ImageReadError("the file contains no image", path)
    series = tf.series[0]
    page = series.keyframe
    shape, axes = tuple(int(n) for n in series.shape), str(series.axes)
    dtype = None if series.dtype is None else np.dtype(series.dtype)
    if dtype is None or dtype.kind not in "biuf":
        raise ImageReadError(f"unsupported pixel type ({series.dtype})", path)
    samples = int(page.samplesperpixel)
    if (
        samples in (3, 4)
        and dtype.kind in "if"
        and len(series.pages) == 1
        and len(shape) == 3
        and axes.startswith("S")
    ):
        # tifffile itself tags a 3- or 4-slice grayscale stack as (planar) RGB(A); signed and
        # float pixels are never colour, so these planes are slices
        return _Layout(shape, (1.0, 1.0, 1.0))
    if samples > 1 or int(page.photometric) in _COLOUR:
        hint = (
            " If its 3-4 planes are slices of a grayscale stack, save it again with "
            "photometric='minisblack' (tifffile) or as one page per slice."
            if samples in (3, 4)
            else ""
        )
        raise ImageReadError(
            "colour images (RGB/RGBA) are not supported; convert to grayscale first." + hint, path
        )
    keep = [i for i, (a, n) in enumerate(zip(axes, shape, strict=True)) if n != 1 or a in "YX"]
    kept = "".join(axes[i] for i in keep)
    if "C" in kept or "S" in kept:
        raise ImageReadError(
            f"multi-channel images are not supported (axes {axes}, shape {shape})", path
        )
    if len(keep) not in (2, 3) or kept[-2:] != "YX":
        raise ImageReadError(
            f"expected a 2D image or a 3D stack, got axes {axes} with shape {shape}", path
        )
    pages = len(series.pages)
    if pages > 1 and series.dataoffset is None and pages * int(page.size) != math.prod(shape):
        # a stack read page by page (not as one block) needs a page for each of its images
        raise ImageReadError(
            f"the file is truncated or damaged: the header describes a "
            f"{' x '.join(map(str, shape))} image but the file holds {pages} pages of "
            f"{' x '.join(map(str, page.shape))}",
            path,
        )
    size = path.stat().st_size
    for p in series.pages:
        spans = () if p is None else zip(p.dataoffsets, p.databytecounts, strict=False)
        if any(offset + count > size for offset, count in spans):
            raise ImageReadError("the file is truncated: image data run past its end", path)
    first = min(page.dataoffsets, default=0)
    # packed pixels (1-bit masks) take less than a byte each: no byte count to check then
    unpacked = int(page.compression) == 1 and int(page.bitspersample) >= 8
    check_size(path, shape, dtype.itemsize, size - first if unpacked else None)
    kept_shape = tuple(shape[i] for i in keep)
    return _Layout(kept_shape, _spacing(tf, page, len(kept_shape)))


def _read(tf: tifffile.TiffFile, path: Path, errors: _Errors) -> Volume:
    """Read the first image series of an open TIFF."""
    layout = _layout(tf, path)
    errors.check()
    data = np.asarray(tf.series[0].asarray()).reshape(layout.shape)
    errors.check()
    if data.dtype.kind == "b":
        data = data.astype(np.uint8)
    return Volume(data=data, spacing=layout.spacing, path=path, format="tiff")


@contextmanager
def _opened(path: Path) -> Iterator[tuple[tifffile.TiffFile, _Errors]]:
    """Open a TIFF with its damage log; any problem, in the block too, is an ImageReadError."""
    errors = _Errors(path)
    logger = logging.getLogger("tifffile")
    logger.addHandler(errors)
    try:
        try:
            tf = tifffile.TiffFile(path)
        except Exception as exc:
            raise ImageReadError(f"not a valid TIFF file ({exc})", path) from exc
        with tf:
            errors.check()
            yield tf, errors
    except ImageReadError:
        raise
    except MemoryError as exc:
        raise ImageReadError("not enough memory to load the image", path) from exc
    except Exception as exc:
        raise ImageReadError(
            f"the TIFF file is corrupt ({type(exc).__name__}: {exc})", path
        ) from exc
    finally:
        logger.removeHandler(errors)


def read_tiff(path: Path) -> Volume:
    """Read a grayscale 2D image or 3D stack from a TIFF file.

    Raises
    ------
    ImageReadError
        Not a TIFF, corrupt or truncated, colour or multi-channel, or more than 3D.
    """
    path = Path(path)
    with _opened(path) as (tf, errors):
        return _read(tf, path, errors)


def open_tiff_streamed(path: Path) -> Volume | None:
    """Open an uncompressed, contiguous 3D TIFF stack to be read slice by slice, as it is used.

    The pixels stay in the file behind an :class:`~napari_fcnseg.io.orientation.OrientedArray`
    (same axes, voxel size and checks as :func:`read_tiff`); indexing reads only the slices it
    needs. Returns None for files that must be decoded whole (compressed, tiled or scattered
    pages, 1-bit) or are 2D: read those with :func:`read_tiff`.

    Raises
    ------
    ImageReadError
        Where :func:`read_tiff` refuses the file from its header.
    """
    path = Path(path)
    with _opened(path) as (tf, _errors):
        layout = _layout(tf, path)
        series = tf.series[0]
        page = series.keyframe
        offset, dtype = series.dataoffset, np.dtype(series.dtype)
        if len(layout.shape) != 3 or offset is None or int(page.compression) != 1:
            return None
        if dtype.kind == "b":
            return None
        if int(page.bitspersample) != 8 * dtype.itemsize or int(page.fillorder) != 1:
            return None
        stored = dtype.newbyteorder(tf.byteorder)
        source = _ContiguousStack(path, int(offset), layout.shape, stored)
    return Volume(data=OrientedArray(source, None, dtype), spacing=layout.spacing, path=path,
                  format="tiff")


class _ContiguousStack:
    """A contiguous uncompressed ``(Z, Y, X)`` stack, read from its file a slab at a time.

    Reads with plain file reads rather than a memory map: pages of a map stay resident (and
    counted in the process's memory) after use, reads free their buffer.
    """

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._path, self._offset, self._dtype = path, offset, dtype
        self.shape = shape

    def __getitem__(self, index: tuple) -> np.ndarray:
        first, rest = index[0], tuple(index[1:])
        n, plane = self.shape[0], int(np.prod(self.shape[1:]))
        pick: int | slice
        if isinstance(first, slice):
            start, stop, step = first.indices(n)
            z0, z1, pick = start, max(start, stop), slice(None, None, step)
        else:
            z0, z1, pick = int(first), int(first) + 1, 0
        with open(self._path, "rb") as fh:
            fh.seek(self._offset + z0 * plane * self._dtype.itemsize)
            block = np.fromfile(fh, self._dtype, count=(z1 - z0) * plane)
        if block.size != (z1 - z0) * plane:
            raise ImageReadError("the file is truncated: image data run past its end",
                                 self._path)
        return block.reshape((z1 - z0, *self.shape[1:]))[(pick, *rest)]


def probe_tiff(path: Path) -> tuple[int, ...]:
    """Check from the header alone that :func:`read_tiff` can read ``path``; no pixel is read.

    The same rules as :func:`read_tiff` (one function applies them for both), so a colour,
    multi-channel, more than 3D, truncated or unparsable file is refused here; damage that
    only the pixel data shows (a corrupt compressed strip, say) is found by reading.

    Returns
    -------
    tuple of int
        The shape of the volume :func:`read_tiff` returns.

    Raises
    ------
    ImageReadError
        Where :func:`read_tiff` refuses the file before reading its pixels.
    """
    path = Path(path)
    with _opened(path) as (tf, errors):
        shape = _layout(tf, path).shape
        errors.check()
        return shape


def prepare_image(
    data: Any, spacing: tuple[float, ...] | None, path: Path
) -> tuple[np.ndarray, tuple[float, ...]]:
    """Validate an image and its spacing for :func:`write_tiff`.

    Returns the array (bool, int8 and float16 converted losslessly to a TIFF-friendly
    dtype) and the spacing as floats.

    Raises
    ------
    ImageWriteError
        Not 2D/3D, empty, non-numeric, or a spacing of the wrong length or value.
    """
    arr = np.asarray(data)
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise ImageWriteError(f"expected a non-empty 2D or 3D image, got shape {arr.shape}", path)
    if arr.dtype.kind not in "biuf":
        raise ImageWriteError(f"cannot write data of type {arr.dtype} to TIFF", path)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    target = _WIDEN.get(arr.dtype)
    if target is not None:
        arr = arr.astype(target)
    values = (1.0,) * arr.ndim if spacing is None else tuple(spacing)
    sizes = [_size(v) for v in values]
    clean = tuple(s for s in sizes if s is not None)
    if len(clean) != arr.ndim or len(sizes) != arr.ndim:
        raise ImageWriteError(
            f"spacing must be {arr.ndim} positive numbers (one per axis), got {spacing!r}", path
        )
    return arr, clean


def write_tiff(path: Path, data: Any, spacing: tuple[float, ...] | None) -> None:
    """Write ``data`` to ``path`` as a TIFF recording ``spacing`` in mm (non-atomic).

    uint8, uint16, int16 and float32 are written as ImageJ hyperstacks (``spacing`` and
    ``unit=mm`` in the description, X/YResolution = 1 / pixel size); other dtypes as
    OME-TIFF with ``PhysicalSize*`` in mm, so no value is lost.
    """
    arr, sizes = prepare_image(data, spacing, Path(path))
    sy, sx = sizes[-2:]
    axes = "ZYX" if arr.ndim == 3 else "YX"
    if arr.dtype in _IMAGEJ_DTYPES:
        meta: dict[str, Any] = {"axes": axes, "unit": "mm"}
        if arr.ndim == 3:
            meta["spacing"] = sizes[0]
        tifffile.imwrite(
            path,
            arr,
            imagej=True,
            photometric="minisblack",
            resolution=(1.0 / sx, 1.0 / sy),
            metadata=meta,
        )
        return
    meta = {"axes": axes}
    for axis, size in zip(axes, sizes, strict=True):
        meta[f"PhysicalSize{axis}"] = size
        meta[f"PhysicalSize{axis}Unit"] = "mm"
    tifffile.imwrite(path, arr, ome=True, photometric="minisblack", metadata=meta)
