"""napari reader for CT/MR images: TIFF, NIfTI and DICOM (files or a folder of one series).

Images open with their voxel spacing as the layer scale, so distances are in millimetres, and
CT opens in a soft-tissue window. A TIFF that is not a grayscale image (an RGB photo, say) is
left to napari's own reader.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .layer_keys import CT_DISPLAY_WINDOW, MODALITY_KEY, SOURCE_KEY, LayerDataTuple, axis_labels

if TYPE_CHECKING:  # napari imports the reader at start-up: io (numpy, nibabel...) loads on use
    from napari_fcnseg.io import Volume

SUFFIXES = (".tif", ".tiff", ".nii", ".nii.gz", ".dcm")
_TIFF = (".tif", ".tiff")


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
            if not _readable_folder(p):
                return None
        elif _suffix(p) not in SUFFIXES:
            return None
    if any(_suffix(p) in _TIFF and not p.is_dir() and not _grayscale_tiff(p) for p in paths):
        return None  # an RGB photo, say: napari's own reader opens it
    return lambda _path: [_to_layer(_read(p)) for p in paths]


def _grayscale_tiff(path: Path) -> bool:
    """True when ``path`` is a TIFF this plugin reads, judged from its header alone.

    The pixels are read only when napari calls the reader. A damaged file is not ours either:
    napari's own reader may still make something of it.
    """
    from napari_fcnseg.io import ImageReadError
    from napari_fcnseg.io.tiff import probe_tiff

    if not path.is_file():  # a pipe named x.tif would block the reader
        return False
    try:
        probe_tiff(path)
    except ImageReadError:
        return False
    return True


def _readable_folder(folder: Path) -> bool:
    """True when ``folder`` is a DICOM series folder or a zarr store; other folders are not ours."""
    from napari_fcnseg import io

    try:
        return bool(io.is_supported(folder))
    except Exception:  # a broken folder is simply not ours
        return False


def _read(path: Path) -> Volume:
    from napari_fcnseg import io

    return io.read_volume(path)


def _looks_like_labels(data: Any) -> bool:
    """An integer map with 2-64 distinct non-negative values (sampled), not an image.

    A constant file is taken as an image: nothing tells what it is.
    """
    import numpy as np

    if data.dtype.kind not in "iub" or data.ndim < 2:
        return False
    step = max(1, int(round((data.size / 2_000_000) ** (1 / data.ndim))))
    sample = np.asarray(data[(slice(None, None, step),) * data.ndim])
    if sample.size == 0 or sample.min() < 0:
        return False
    return 2 <= len(np.unique(sample)) <= 64 and int(sample.max()) < 65536


def _labels_layer(volume: Volume, sidecar: dict[str, Any] | None) -> LayerDataTuple:
    """A labels layer-data tuple, with class names, colours and review state when known."""
    from napari_fcnseg.class_style import class_colormap, class_features
    from napari_fcnseg.core.review import METADATA_KEY

    path = Path(volume.path)
    sidecar = sidecar or {}
    metadata: dict[str, Any] = {}
    if sidecar.get("source"):
        metadata[SOURCE_KEY] = str(sidecar["source"])
    if sidecar.get("review"):
        metadata[METADATA_KEY] = sidecar["review"]
    attrs: dict[str, Any] = {
        "name": _layer_name(path),
        "scale": tuple(float(s) for s in volume.spacing),
        "units": "mm",
        "axis_labels": axis_labels(volume.data.ndim),
        "opacity": 0.5,
        "metadata": metadata,
    }
    classes = sidecar.get("classes")
    if classes:
        attrs["features"] = class_features(list(classes))
        attrs["colormap"] = class_colormap(len(classes))
    if volume.origin is not None and len(volume.origin) == volume.data.ndim:
        attrs["translate"] = tuple(float(o) for o in volume.origin)
    return volume.data, attrs, "labels"


def _to_layer(volume: Volume) -> LayerDataTuple:
    """Turn an :class:`napari_fcnseg.io.Volume` into an image or labels layer-data tuple.

    A file with a napari-fcnseg sidecar (saved labels), or an integer map with few distinct
    values, opens as labels; everything else as an image.
    """
    from napari_fcnseg.core.normalize import looks_like_ct
    from napari_fcnseg.io.sidecar import read_sidecar

    path = Path(volume.path)
    sidecar = read_sidecar(path) if path.is_file() else None
    if sidecar is not None or _looks_like_labels(volume.data):
        return _labels_layer(volume, sidecar)
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
        attrs["contrast_limits"] = CT_DISPLAY_WINDOW
    return volume.data, attrs, "image"
