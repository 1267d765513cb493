"""Sample data for napari's File > Open Sample: generated CT-like and MR-like abdomens.

The volumes come from :func:`napari_fcnseg.core.phantoms.generate_volume`: the same seed
always gives the same volume, with exact ground-truth labels (0 background, 1 organ, 2 lesion).
"""

from __future__ import annotations

import numpy as np

from napari_fcnseg.layer_keys import CT_DISPLAY_WINDOW, MODALITY_KEY, LayerDataTuple, axis_labels

SAMPLE_SHAPE = (32, 256, 256)


def generated_abdomen(modality: str = "CT", seed: int | None = None,
                      shape: tuple[int, int, int] = SAMPLE_SHAPE) -> list[LayerDataTuple]:
    """Return an image layer and its ground-truth labels layer as napari layer-data tuples.

    Parameters
    ----------
    modality : {"CT", "MR"}
        CT gives int16 Hounsfield units shown in a soft-tissue window; MR float32 intensities.
    seed : int, optional
        Generator seed; default 0 for CT and 1 for MR (the volumes in ``sample_data/``).
    shape : tuple of int
        (Z, Y, X) voxels.
    """
    from napari_fcnseg.core.phantoms import generate_volume

    modality = modality.upper()
    seed = (0 if modality == "CT" else 1) if seed is None else seed
    phantom = generate_volume(modality, shape, seed)
    name = f"{modality}-like abdomen"
    if modality == "CT":
        limits = CT_DISPLAY_WINDOW
    else:
        low, high = np.percentile(phantom.image[:, ::4, ::4], (0.5, 99.5))
        limits = (float(low), float(high))
    geometry = {"scale": phantom.spacing, "units": "mm", "axis_labels": axis_labels(3)}
    image_meta = {"name": name, **geometry, "colormap": "gray", "contrast_limits": limits,
                  "metadata": {MODALITY_KEY: modality}}
    labels_meta = {"name": f"{name} ground truth", **geometry, "opacity": 0.5}
    return [(phantom.image, image_meta, "image"), (phantom.labels, labels_meta, "labels")]


def ct_abdomen() -> list[LayerDataTuple]:
    """CT-like abdomen (generated), with ground truth."""
    return generated_abdomen("CT")


def mr_abdomen() -> list[LayerDataTuple]:
    """MR-like abdomen (generated), with ground truth."""
    return generated_abdomen("MR")
