"""Keep objects touching reviewed slices, for the Segment widget, off the main thread.

Tracing objects through a 512 x 512 x 133 volume takes about a second, too long to freeze the
viewer for; so the request takes a snapshot of the labels layer and its review state when the
run starts (:func:`anchor_request`, main thread, a copy), and the worker filters the prediction
against it (:func:`apply_anchor`). Slices a person edits while the run goes on are still never
overwritten by the merge; only the anchors are those of the moment the run started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from napari_fcnseg.core.objects import anchor_prediction
from napari_fcnseg.core.review import ReviewState, protected_slices
from napari_fcnseg.core.slices import slice_index

if TYPE_CHECKING:
    from napari.layers import Labels

    from napari_fcnseg.core.predict import Prediction

NO_ANCHORS = "no slice is edited or reviewed yet, so every object was kept"
ON_DISK = ("objects were not filtered: that needs labels held in memory, and these are "
           "stored on disk")


@dataclass
class AnchorRequest:
    """What the worker needs to keep only the objects that touch the person's slices.

    Attributes
    ----------
    classes : list of int
        Label values to filter.
    class_names : list of str
        The model's class names, for the report.
    labels : numpy.ndarray or None
        A copy of the labels layer when the run started; None when there is nothing to filter
        against (see ``reason``).
    state : ReviewState
        The layer's review state then.
    reason : str
        Why nothing can be filtered, when ``labels`` is None.
    """

    classes: list[int]
    class_names: list[str]
    labels: np.ndarray | None = None
    state: ReviewState = field(default_factory=ReviewState)
    reason: str = ""


def anchor_request(layer: Labels | None, classes: list[int],
                   class_names: list[str]) -> AnchorRequest | None:
    """Snapshot ``layer`` for filtering a run's prediction; None when no class is chosen."""
    if not classes:
        return None
    if layer is None:
        return AnchorRequest(classes, class_names, reason=NO_ANCHORS)
    if not isinstance(layer.data, np.ndarray):
        return AnchorRequest(classes, class_names, reason=ON_DISK)
    state = ReviewState.from_metadata(layer.metadata) or ReviewState()
    return AnchorRequest(classes, class_names, np.array(layer.data, copy=True), state)


def apply_anchor(prediction: Prediction, anchor: AnchorRequest) -> str:
    """Filter ``prediction.labels`` in place on its predicted slices; return what was done.

    Runs in the worker thread.
    """
    if anchor.labels is None:
        return anchor.reason
    if tuple(anchor.labels.shape) != tuple(prediction.labels.shape):
        return "objects were not filtered: the labels layer has another shape than the image"
    reviewed = protected_slices(anchor.labels, anchor.state)
    if not reviewed:
        return NO_ANCHORS
    filtered, report = anchor_prediction(anchor.labels, prediction.labels, prediction.slices,
                                         reviewed, anchor.classes)
    shape = tuple(filtered.shape)
    for k in report.changed_slices:
        prediction.labels[slice_index(shape, k)] = filtered[slice_index(shape, k)]
    return report.describe(anchor.class_names)
