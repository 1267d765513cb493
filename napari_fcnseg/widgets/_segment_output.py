"""The Segment widget's main-thread half: put a worker's prediction into napari layers.

A new labels layer takes the prediction array itself; an existing one gets it merged with
:func:`napari_fcnseg.core.review.merge_prediction`, so slices a person edited or reviewed are
kept unless the run was asked to overwrite them (and then they are recorded for undoing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from napari_fcnseg.class_style import class_colormap, class_features, style_labels_layer
from napari_fcnseg.core.review import (
    METADATA_KEY,
    OverwriteUndo,
    ReviewState,
    merge_prediction,
)
from napari_fcnseg.core.slices import slice_index
from napari_fcnseg.layer_keys import PROBABILITY_KEY, SOURCE_KEY

from ._common import find_labels_layer, layer_geometry, layer_named
from ._segment_work import SegmentOutcome

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels

    from napari_fcnseg.core.predict import Prediction

PROBABILITY_COLORMAPS = ("magma", "viridis", "cividis", "inferno")


@dataclass
class Merged:
    """What :func:`merge_into_layers` did.

    Attributes
    ----------
    written, kept : list of int
        Slices written, and predicted slices kept because a person edited or reviewed them.
    layer : napari.layers.Labels
        The labels layer written into (new or existing).
    undo : OverwriteUndo or None
        The person's slices that were overwritten, when the run was asked to overwrite them.
    anchor_note : str
        What keeping only the objects that touch reviewed slices removed ("" when not asked).
    """

    written: list[int]
    kept: list[int]
    layer: Labels
    undo: OverwriteUndo | None
    anchor_note: str = ""


def merge_into_layers(viewer: napari.Viewer, outcome: SegmentOutcome, *, image: Image,
                      model: str, classes: list[str], overwrite: bool) -> Merged:
    """Write a prediction into ``image``'s labels layer, creating the layer when missing.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer holding ``image``.
    outcome : SegmentOutcome
        The worker's prediction and its slice digests.
    image : napari.layers.Image
        The image that was segmented.
    model : str
        Name of the model that predicted.
    classes : list of str
        The model's class names (label value ``i`` is ``classes[i]``).
    overwrite : bool
        Also overwrite slices a person edited or reviewed.

    Raises
    ------
    ValueError
        If the image layer was removed meanwhile, or the labels cannot hold the prediction.
    """
    prediction = outcome.prediction
    if image not in viewer.layers:
        raise ValueError(f"the image layer '{image.name}' was removed meanwhile")
    layer = find_labels_layer(viewer, image)
    state = (ReviewState.from_metadata(layer.metadata) if layer is not None else None
             ) or ReviewState()
    state.classes = list(classes)
    undo = OverwriteUndo() if layer is not None and overwrite else None
    if layer is None:  # nothing to spare: the prediction itself becomes the labels
        data = prediction.labels
        state.record_prediction(outcome.digests, model)
        written = list(prediction.slices)
    else:
        data = layer.data
        written = merge_prediction(data, prediction.labels, prediction.slices, state, model,
                                   overwrite_protected=overwrite, digests=outcome.digests,
                                   undo=undo)
    kept = sorted(set(prediction.slices) - set(written))
    scores = getattr(prediction, "uncertainty", None) or {}
    state.uncertainty.update({k: scores[k] for k in written if k in scores})
    if prediction.probabilities is not None:
        show_probabilities(viewer, image, prediction, classes)
    if outcome.entropy is not None:
        show_uncertainty(viewer, image, outcome.entropy, prediction.slices)
    if layer is None:
        metadata = {METADATA_KEY: state.to_metadata()}
        if SOURCE_KEY in image.metadata:
            metadata[SOURCE_KEY] = image.metadata[SOURCE_KEY]
        layer = viewer.add_labels(data, name=f"{image.name} labels", **layer_geometry(image),
                                  metadata=metadata, opacity=0.5,
                                  features=class_features(classes),
                                  colormap=class_colormap(len(classes)))
    else:
        layer.metadata[METADATA_KEY] = state.to_metadata()
        if list(layer.features.get("class", [])) != list(classes):
            style_labels_layer(layer, list(classes))
        layer.refresh()
    return Merged(written, kept, layer, undo, outcome.anchor_note)


def show_uncertainty(viewer: napari.Viewer, image: Image, entropy: np.ndarray,
                     slices: list[int]) -> None:
    """Write the per-pixel uncertainty of the predicted slices into "<image> uncertainty"."""
    from napari.layers import Image as ImageLayer

    shape = tuple(image.data.shape)
    name = f"{image.name} uncertainty"
    layer = layer_named(viewer, name)
    if isinstance(layer, ImageLayer) and tuple(layer.data.shape) == shape:
        for k in slices:
            idx = slice_index(shape, k)
            layer.data[idx] = entropy[idx]
        layer.refresh()
    else:
        viewer.add_image(np.asarray(entropy, np.uint8), name=name, **layer_geometry(image),
                         colormap="inferno", contrast_limits=(0, 255), blending="additive",
                         opacity=0.6, metadata={PROBABILITY_KEY: "uncertainty"})


def show_probabilities(viewer: napari.Viewer, image: Image, prediction: Prediction,
                       classes: list[str]) -> None:
    """Write the foreground-class probabilities into one uint8 image layer per class."""
    from napari.layers import Image as ImageLayer

    shape, probabilities = tuple(image.data.shape), prediction.probabilities
    if probabilities is None:
        return
    for c in range(1, probabilities.shape[0]):
        cls = classes[c] if c < len(classes) else f"class {c}"
        name = f"{image.name} {cls} probability"
        probs = probabilities[c]
        layer = layer_named(viewer, name)
        if isinstance(layer, ImageLayer) and tuple(layer.data.shape) == shape:
            for k in prediction.slices:
                idx = slice_index(shape, k)
                layer.data[idx] = probs[idx]
            layer.refresh()
        else:
            viewer.add_image(
                np.asarray(probs, np.uint8), name=name, **layer_geometry(image),
                colormap=PROBABILITY_COLORMAPS[(c - 1) % len(PROBABILITY_COLORMAPS)],
                contrast_limits=(0, 255), blending="additive", opacity=0.5,
                metadata={PROBABILITY_KEY: cls})
