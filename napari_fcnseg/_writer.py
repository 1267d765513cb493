"""napari writer: save a Labels layer as NIfTI (``.nii``, ``.nii.gz``), TIFF or DICOM SEG.

DICOM SEG (``.dcm``) needs labels made on a DICOM series this plugin opened; it references that
series (see :mod:`napari_fcnseg.io.dicom_seg`).

Class names and the review record go into a sidecar JSON beside the file (see
:mod:`napari_fcnseg.io.sidecar`), so opening the file again resumes where the person stopped.

When the labels were made from an image this plugin opened, NIfTI output goes back onto that
image's voxel grid with its affine, so the labels overlay the scan in other viewers; otherwise
the layer's scale and translate give the voxel size and origin.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .layer_keys import SOURCE_KEY

logger = logging.getLogger(__name__)


def _like(path: str, data: np.ndarray, attributes: dict[str, Any]) -> Any:
    """The source image's Volume when known and of the same shape, else the layer geometry."""
    from napari_fcnseg import io

    source = (attributes.get("metadata") or {}).get(SOURCE_KEY)
    if source and Path(source).exists():
        try:
            volume = io.read_volume(source)
        except io.ImageReadError as exc:
            logger.warning("labels saved without the source geometry: %s", exc)
        else:
            if tuple(volume.data.shape) == tuple(data.shape):
                return volume
    ndim = data.ndim
    scale = tuple(float(s) for s in (attributes.get("scale") or (1.0,) * ndim))[-ndim:]
    translate = tuple(float(t) for t in (attributes.get("translate") or (0.0,) * ndim))[-ndim:]
    return io.Volume(data=data, spacing=scale, path=Path(path), format="napari",
                     origin=translate)


def write_labels(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Write one Labels layer to ``path``; returns the written path.

    Parameters
    ----------
    path : str
        Destination ending in ``.nii``, ``.nii.gz``, ``.tif`` or ``.tiff``.
    data : array-like
        The layer's (2D or 3D) integer labels.
    attributes : dict
        The layer's attributes (``scale``, ``translate``, ``metadata``, ...).

    Raises
    ------
    napari_fcnseg.io.ImageWriteError
        When the labels or the destination are unusable; the message says why.
    """
    from napari_fcnseg import __version__, io
    from napari_fcnseg.core.review import METADATA_KEY
    from napari_fcnseg.io.sidecar import write_sidecar

    labels = np.asarray(data)
    metadata = attributes.get("metadata") or {}
    features = attributes.get("features")
    classes = None
    if features is not None and "class" in getattr(features, "columns", ()):
        classes = [str(c) for c in features["class"]]
    review = metadata.get(METADATA_KEY)
    model = str((review or {}).get("model") or "")
    written = io.write_labels(path, labels, like=_like(path, labels, attributes),
                              class_names=classes, model_name=model,
                              software_version=__version__)
    if classes or review:  # what resuming needs, beside the labels (see io.sidecar)
        write_sidecar(written, classes, review, metadata.get(SOURCE_KEY))
    return [str(written)]
