"""DICOM series reading: group files by series, stack slices in space, apply the rescale.

Input is a folder (searched recursively) or one file of a series (its folder is searched
and that file's series loaded). Non-DICOM files and objects without pixels (reports,
presentation states, DICOMDIR) are ignored. Slices are ordered by ``ImagePositionPatient``
projected on the normal ``cross(row, column)`` of ``ImageOrientationPatient``, never by
file name or InstanceNumber (only a fallback when positions are absent), then reoriented
like NIfTI (see :mod:`napari_fcnseg.io.nifti`); a single slice is returned as stored.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from napari_fcnseg.io.base import ImageReadError, Volume, apply_rescale, check_size
from napari_fcnseg.io.dicom_pixels import decode_pixels
from napari_fcnseg.io.orientation import IDENTITY_ORNT, to_display

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_MAX_FRAMES = 100_000
# where enhanced (multi-frame) objects keep per-frame attributes
_GROUP_SEQUENCE = {
    "ImagePositionPatient": "PlanePositionSequence",
    "ImageOrientationPatient": "PlaneOrientationSequence",
    **dict.fromkeys(("PixelSpacing", "SliceThickness", "SpacingBetweenSlices"),
                    "PixelMeasuresSequence"),
    **dict.fromkeys(("RescaleSlope", "RescaleIntercept"), "PixelValueTransformationSequence"),
}  # fmt: skip


class _Slice(NamedTuple):
    """One 2D image: a single-frame file, or one frame of a multi-frame file."""

    path: Path
    ds: Dataset
    frame: int | None
    ipp: np.ndarray | None
    iop: np.ndarray | None


def _has_magic(path: Path) -> bool:
    """True when the file carries the ``DICM`` marker at byte 128."""
    with contextlib.suppress(OSError), open(path, "rb") as fh:
        fh.seek(128)
        return fh.read(4) == b"DICM"
    return False


def _is_candidate(path: Path) -> bool:
    """A file worth parsing: DICOM marker, or a ``.dcm`` suffix (raw data sets)."""
    return path.suffix.lower() == ".dcm" or _has_magic(path)


def _walk(folder: Path, recursive: bool = True) -> Iterator[Path]:
    """Files under ``folder`` in sorted order, skipping hidden files and folders."""
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        yield from (Path(root, n) for n in sorted(names) if not n.startswith("."))


def folder_has_dicom(folder: str | Path, limit: int = 64) -> bool:
    """Cheaply tell whether one of the first ``limit`` files under ``folder`` is DICOM."""
    return any(_is_candidate(f) for f in itertools.islice(_walk(Path(folder)), limit))


def _read_header(path: Path) -> Dataset:
    """Parse a file, deferring large values (the pixel data) until needed."""
    return pydicom.dcmread(path, defer_size="1 KB", force=not _has_magic(path))


def _is_image(ds: Dataset) -> bool:
    """True for objects that carry pixel data."""
    return any(k in ds for k in _PIXEL_KEYWORDS) and "Rows" in ds and "Columns" in ds


def _int(value: Any, default: int) -> int:
    """``int(value)`` or ``default``."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return default


def _float(value: Any, default: float) -> float:
    """A finite float, or ``default``."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return number if math.isfinite(number) else default


def _size(value: Any) -> float | None:
    """A positive finite float, or None."""
    number = _float(value, 0.0)
    return number if number > 0 else None


def _floats(value: Any, n: int) -> np.ndarray | None:
    """``n`` finite floats from a multi-valued element, or None."""
    try:
        arr = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError, OverflowError):
        return None
    return arr if arr.shape == (n,) and np.all(np.isfinite(arr)) else None


def _attr(ds: Dataset, frame: int | None, keyword: str) -> Any:
    """An attribute from the per-frame, then shared functional groups, then the top level."""
    groups = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if frame is not None and per_frame and frame < len(per_frame):
        groups.append(per_frame[frame])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for group in groups if keyword in _GROUP_SEQUENCE else []:
        seq = group.get(_GROUP_SEQUENCE[keyword])
        if seq and seq[0].get(keyword) is not None:
            return seq[0].get(keyword)
    return ds.get(keyword)


def _slices(items: list[tuple[Path, Dataset]], folder: Path) -> list[_Slice]:
    """Expand files into slices (one per frame), refusing colour and mixed sizes."""
    out, size0 = [], (_int(items[0][1].get("Rows"), 0), _int(items[0][1].get("Columns"), 0))
    for path, ds in items:
        if _int(ds.get("SamplesPerPixel"), 1) > 1:
            raise ImageReadError("colour DICOM images are not supported", path)
        size = (_int(ds.get("Rows"), 0), _int(ds.get("Columns"), 0))
        if size != size0:
            raise ImageReadError(
                f"the series mixes image sizes ({size0[0]}x{size0[1]} in {items[0][0].name}, "
                f"{size[0]}x{size[1]} in {path.name})",
                folder,
            )
        n = _int(ds.get("NumberOfFrames"), 1)
        if not 1 <= n <= _MAX_FRAMES:
            raise ImageReadError(f"implausible number of frames ({n})", path)
        for frame in [None] if n == 1 else range(n):
            ipp = _floats(_attr(ds, frame, "ImagePositionPatient"), 3)
            iop = _floats(_attr(ds, frame, "ImageOrientationPatient"), 6)
            out.append(_Slice(path, ds, frame, ipp, iop))
    return out


def _order(slices: list[_Slice], folder: Path) -> tuple[list[_Slice], np.ndarray | None]:
    """Sort slices along the normal and check the stack; positions are None when unknown."""
    iops = [s.iop for s in slices if s.iop is not None]
    ipps = [s.ipp for s in slices if s.ipp is not None]
    if len(iops) < len(slices) or len(ipps) < len(slices):
        key = [(_int(s.ds.get("InstanceNumber"), 0), str(s.path), s.frame or 0) for s in slices]
        return [slices[i] for i in sorted(range(len(slices)), key=key.__getitem__)], None
    ref = iops[0]
    for s, iop in zip(slices, iops, strict=True):
        if not np.allclose(iop, ref, atol=1e-3):
            raise ImageReadError(
                f"the slices have different orientations ({np.round(ref, 3).tolist()} in "
                f"{slices[0].path.name}, {np.round(iop, 3).tolist()} in {s.path.name})",
                folder,
            )
    normal = np.cross(ref[:3], ref[3:])
    if np.linalg.norm(normal) < 1e-6:
        raise ImageReadError(f"invalid ImageOrientationPatient {ref.tolist()}", slices[0].path)
    normal /= np.linalg.norm(normal)
    positions = np.array([float(ipp @ normal) for ipp in ipps])
    order = np.argsort(positions, kind="stable")
    slices, positions = [slices[i] for i in order], positions[order]
    steps = np.diff(positions)
    moving = steps[steps > 1e-4]
    tol = max(1e-4, 0.05 * float(np.median(moving))) if moving.size else 1e-4
    for i in np.flatnonzero(steps < tol)[:1]:
        raise ImageReadError(
            f"duplicated slice at position {positions[i]:.2f} mm ({slices[i].path.name} and "
            f"{slices[i + 1].path.name}); the series may hold several acquisitions",
            folder,
        )
    if steps.size:
        median = float(np.median(steps))
        for i in np.flatnonzero(steps > 1.5 * median)[:1]:
            raise ImageReadError(
                f"missing slice(s): a gap of {steps[i]:.2f} mm between positions "
                f"{positions[i]:.2f} and {positions[i + 1]:.2f} mm ({slices[i].path.name}, "
                f"{slices[i + 1].path.name}) where slices are {median:.2f} mm apart",
                folder,
            )
    return slices, positions


def _stack(slices: list[_Slice], folder: Path) -> np.ndarray:
    """Decode, stack and rescale the ordered slices."""
    first = slices[0].ds
    rows, cols = _int(first.get("Rows"), 0), _int(first.get("Columns"), 0)
    bits = _int(first.get("BitsAllocated"), 16)
    check_size(slices[0].path, (len(slices), rows, cols), max(1, -(-bits // 8)), None)
    out: np.ndarray | None = None
    cache: dict[Path, np.ndarray] = {}
    for i, s in enumerate(slices):
        try:
            arr = cache.get(s.path)
            if arr is None:
                arr = decode_pixels(s.path)
                cache = {s.path: arr} if s.frame is not None else {}
        except (MemoryError, ImageReadError):
            raise
        except Exception as exc:
            raise ImageReadError(f"cannot decode the pixel data ({exc})", s.path) from exc
        img = arr if s.frame is None else arr[s.frame]
        if img.shape != (rows, cols) or img.dtype.kind not in "biuf":
            raise ImageReadError(f"unexpected pixel data ({img.shape}, {img.dtype})", s.path)
        if out is None:
            out = np.empty((len(slices), rows, cols), img.dtype)
        elif not np.can_cast(img.dtype, out.dtype):
            out = out.astype(np.result_type(out.dtype, img.dtype))
        out[i] = img
    if out is None:
        raise ImageReadError("the series holds no image", folder)
    scales = [
        (_float(_attr(s.ds, s.frame, "RescaleSlope"), 1.0),
         _float(_attr(s.ds, s.frame, "RescaleIntercept"), 0.0))
        for s in slices
    ]  # fmt: skip
    if len(set(scales)) == 1:
        return apply_rescale(out, *scales[0])
    stack = out.astype(np.float32)
    for i, (slope, intercept) in enumerate(scales):
        stack[i] = stack[i] * np.float32(slope) + np.float32(intercept)
    return stack


def _series_info(uid: str, items: list[tuple[Path, Dataset]]) -> dict:
    """Summary of one series for ``Volume.series``."""
    ds, n = items[0][1], sum(max(1, _int(d.get("NumberOfFrames"), 1)) for _, d in items)
    description, modality = ds.get("SeriesDescription"), ds.get("Modality")
    description, modality = str(description or ""), str(modality) if modality else None
    return {"uid": uid, "description": description, "n_slices": n, "modality": modality}


def _scan(path: Path) -> tuple[dict[str, list[tuple[Path, Dataset]]], Path | None]:
    """Group the image files next to (or under) ``path`` by SeriesInstanceUID."""
    path = path.resolve()  # so the given file is recognised among its siblings
    given = None if path.is_dir() else path
    folder = path if given is None else path.parent
    headers: dict[Path, Dataset] = {}
    if given is not None:
        try:
            headers[given] = _read_header(given)
        except Exception as exc:
            raise ImageReadError(f"not a valid DICOM file ({exc})", given) from exc
        if not _is_image(headers[given]):
            uid = headers[given].get("SOPClassUID")
            kind = getattr(uid, "name", None) or "not an image"
            raise ImageReadError(f"the DICOM object has no image data ({kind})", given)
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    files = [f for f in _walk(folder, given is None) if f.is_file() and _is_candidate(f)]
    for f in files if given is None or given in files else [given, *files]:
        try:
            ds = headers[f] if f in headers else _read_header(f)
            if not _is_image(ds):
                continue
            uid = str(ds.get("SeriesInstanceUID", "") or "") or "unknown"
        except Exception:  # not DICOM or unreadable: ignored like any other stray file
            continue
        groups.setdefault(uid, []).append((f, ds))
    if not groups:
        raise ImageReadError(f"no DICOM images found ({len(files)} DICOM files checked)", folder)
    return groups, given


def read_dicom(path: Path, series_uid: str | None = None) -> Volume:
    """Read one DICOM series as a :class:`Volume`.

    Parameters
    ----------
    path : Path
        A folder, or one file of the series.
    series_uid : str, optional
        SeriesInstanceUID to load. By default the series of the given file, or for a
        folder the series with the most slices.

    Raises
    ------
    ImageReadError
        No images, unknown series, mixed sizes or orientations, duplicated or missing
        slices, colour images, undecodable pixel data.
    """
    path = Path(path)
    groups, given = _scan(path)
    folder = path if given is None else given.parent
    if series_uid is not None and series_uid not in groups:
        raise ImageReadError(
            f"no series with UID {series_uid}; found {', '.join(sorted(groups))}", folder
        )
    infos = {uid: _series_info(uid, items) for uid, items in groups.items()}
    if series_uid is not None:
        uid = series_uid
    elif given is not None:
        uid = next(u for u, items in groups.items() if any(f == given for f, _ in items))
    else:
        uid = max(groups, key=lambda u: (infos[u]["n_slices"], u))
    others = sorted((u for u in groups if u != uid), key=lambda u: -infos[u]["n_slices"])
    items = groups[uid]

    first = items[0][1]
    slices, positions = _order(_slices(items, folder), folder)
    data = _stack(slices, folder)

    s0 = slices[0]
    pixel = _floats(_attr(s0.ds, s0.frame, "PixelSpacing"), 2)
    pixel = _floats(s0.ds.get("ImagerPixelSpacing"), 2) if pixel is None else pixel
    dy, dx = (_size(v) or 1.0 for v in (pixel if pixel is not None else (1.0, 1.0)))
    if positions is not None and len(positions) > 1:
        dz = float(np.median(np.diff(positions)))
    else:
        dz = next(
            (v for k in ("SpacingBetweenSlices", "SliceThickness")
             if (v := _size(_attr(s0.ds, s0.frame, k))) is not None),
            1.0,
        )  # fmt: skip
    iop = s0.iop if positions is not None and s0.iop is not None else np.array([1.0, 0, 0, 0, 1, 0])
    normal = np.cross(iop[:3], iop[3:])
    normal /= np.linalg.norm(normal)
    affine = np.eye(4)
    affine[:3, :3] = np.column_stack([iop[:3] * dx, iop[3:] * dy, normal * dz])
    affine[:3, 3] = s0.ipp if positions is not None and s0.ipp is not None else 0.0
    affine[:2] *= -1  # LPS (DICOM) to RAS (NIfTI)
    geometry: dict[str, Any] = {
        "source_shape": (data.shape[2], data.shape[1], data.shape[0]),
        "is_2d": data.shape[0] == 1,
        "files": [str(s.path) for s in slices],
        "series_uid": uid,
    }
    spacing: tuple[float, ...]
    if data.shape[0] == 1:
        geometry["ornt"] = IDENTITY_ORNT.copy()
        display, spacing, origin = data[0], (dy, dx), None
    else:
        display, geometry["ornt"], spacing, origin = to_display(data.transpose(2, 1, 0), affine)
        origin = origin if positions is not None else None
    modality = first.get("Modality")
    return Volume(
        data=display,
        spacing=spacing,
        path=path,
        format="dicom",
        modality=str(modality) if modality else None,
        affine=affine,
        header=geometry,
        series=[infos[uid]] + [infos[u] for u in others],
        origin=origin,
    )
