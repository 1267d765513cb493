"""napari reader for CT/MR images: TIFF, NIfTI and DICOM (files or a folder of one series).

Images open with their voxel spacing as the layer scale, so distances are in millimetres, and
CT opens in a soft-tissue window. A TIFF that is not a grayscale image (an RGB photo, say) is
left to napari's own reader.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._sample_data import CT_WINDOW, MODALITY_KEY

SOURCE_KEY = "napari-fcnseg-source"
SUFFIXES = (".tif", ".tiff", ".nii", ".nii.gz", ".dcm")
_TIFF = (".tif", ".tiff")

LayerDataTuple = tuple[Any, dict[str, Any], str]


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _layer_name(path: Path) -> str:
    suffix = _suffix(path)
    return path.name[: -len(suffix)] if suffix and path.is_file() else path.name


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerDataTuple]] | None:
    """Return a function reading ``path`` into layer data, or None when it is not ours.

    Parameters
    ----------
    path : str or list of str
        A file, a DICOM folder, or several files (DICOM files of one series open as one
        volume; other lists open file by file).
    """
    paths = [Path(p) for p in ([path] if isinstance(path, str | Path) else path)]
    if not paths:
        return None
    if len(paths) > 1 and all(_suffix(p) == ".dcm" for p in paths):
        paths = paths[:1]  # a DICOM file opens its whole series
    for p in paths:
        if p.is_dir():
            if not _has_dicom(p):
                return None
        elif _suffix(p) not in SUFFIXES:
            return None
    if any(_suffix(p) in _TIFF for p in paths):
        # read TIFFs now: one that is not a grayscale image goes to napari's default reader
        from napari_fcnseg import io

        try:
            volumes = {p: io.read_volume(p) for p in paths}
        except io.ImageReadError:
            return None
        return lambda _path: [_to_layer(volumes[p]) for p in paths]
    return lambda _path: [_to_layer(_read(p)) for p in paths]


def _has_dicom(folder: Path) -> bool:
    """True when ``folder`` holds DICOM files (other folders, e.g. zarr, are not ours)."""
    from napari_fcnseg import io

    try:
        return bool(io.is_supported(folder))
    except Exception:  # a broken folder is simply not ours
        return False


def _read(path: Path) -> Any:
    from napari_fcnseg import io

    return io.read_volume(path)


def axis_labels(ndim: int) -> tuple[str, ...]:
    """Axis names for an image of ``ndim`` axes: (..., "t", "z", "y", "x"), slices along "z"."""
    names = ("t", "z", "y", "x")[4 - min(ndim, 4):]
    return (*(f"axis {i}" for i in range(ndim - len(names))), *names)


def _to_layer(volume: Any) -> LayerDataTuple:
    """Turn an :class:`napari_fcnseg.io.Volume` into an image layer-data tuple."""
    from napari_fcnseg.core.normalize import looks_like_ct

    path = Path(volume.path)
    modality = (volume.modality or "").upper()
    is_ct = modality == "CT" or (not modality and looks_like_ct(volume.data))
    metadata: dict[str, Any] = {SOURCE_KEY: str(path)}
    if modality in ("CT", "MR"):
        metadata[MODALITY_KEY] = modality
    attrs: dict[str, Any] = {
        "name": _layer_name(path),
        "scale": tuple(float(s) for s in volume.spacing),
        "units": "mm",
        "axis_labels": axis_labels(volume.data.ndim),
        "colormap": "gray",
        "metadata": metadata,
    }
    if volume.origin is not None and len(volume.origin) == volume.data.ndim:
        attrs["translate"] = tuple(float(o) for o in volume.origin)
    if is_ct:
        attrs["contrast_limits"] = CT_WINDOW
    return volume.data, attrs, "image"
