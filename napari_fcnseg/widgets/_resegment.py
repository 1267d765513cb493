"""Re-segment the slices nobody edited or reviewed, with the model a round just made."""

from __future__ import annotations

import concurrent.futures
from typing import Any

from napari_fcnseg.core.review import protected_slices
from napari_fcnseg.core.slices import slice_count

from ._common import notify_info


def resegment_unreviewed(widget: Any, model: str) -> concurrent.futures.Future:
    """Re-segment every slice of ``widget``'s labels that is neither edited nor reviewed.

    ``widget`` is the Review and Fine-tune widget; the work goes through the viewer's Segment
    widget with ``model``. Returns the Segment widget's future, or one holding the widget's
    error when re-segmenting is not possible.
    """
    future: concurrent.futures.Future = concurrent.futures.Future()
    seg = widget.session.segmenter()
    image, labels = widget.image_layer, widget.labels_layer
    if seg is None:
        return widget.job.fail(future, "Open the Segment widget to re-segment the slices.")
    if image is None or labels is None:
        return widget.job.fail(future, "Choose the image and its labels layer first.")
    seg.image_layer = image
    writes_here = seg.labels_layer is labels
    if not writes_here:
        return widget.job.fail(future, f"The Segment widget writes the segmentation of "
                               f"'{image.name}' into '{image.name} labels', not into "
                               f"'{labels.name}'; rename the labels layer to re-segment it.")
    if not seg.select_model(model):
        return widget.job.fail(future, f"Model '{model}' is not available.")
    state = widget.review_state(create=True)
    keep = set(protected_slices(labels.data, state))
    todo = [k for k in range(slice_count(tuple(labels.data.shape))) if k not in keep]
    if not todo:
        notify_info("Every slice is edited or reviewed; nothing to re-segment.")
        future.set_result([])
        return future
    widget.status_label.setText(f"Re-segmenting {len(todo)} unreviewed slice(s) with "
                                f"'{model}'...")
    return seg.segment(slices=todo)
