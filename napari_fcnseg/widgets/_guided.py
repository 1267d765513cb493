"""Guided review: jump to the slice most worth checking next, and keyboard shortcuts.

The Segment widget scores every slice it writes by how unsure the model was there
(:func:`napari_fcnseg.core.predict.slice_uncertainty`, kept in the layer's review state).
"Next to review" goes to the most uncertain slice nobody edited or reviewed yet; without
scores, to the next such slice. Re-segmenting with a fine-tuned model scores the rewritten
slices anew, so the ranking follows the newest model.
"""

from __future__ import annotations

import weakref
from typing import Any

from napari_fcnseg.core.review import protected_slices
from napari_fcnseg.core.slices import slice_count

from ._common import is_alive, notify_info

#: Shortcut -> (short label, what it does, method name on the review widget).
SHORTCUTS: dict[str, tuple[str, str, str]] = {
    "Shift-R": ("reviewed", "mark the current slice reviewed", "mark_reviewed"),
    "Shift-N": ("next", "go to the next slice to review", "go_to_next_to_review"),
    "Shift-B": ("back", "go back to the previous slice visited this way", "go_back"),
}


def next_to_review(widget: Any) -> int | None:
    """The slice the review widget should show next, or None when all are owned."""
    labels = widget.labels_layer
    if labels is None or labels.data.ndim < 3:
        return None
    state = widget.review_state(create=True)
    shape = tuple(labels.data.shape)
    owned = protected_slices(labels.data, state)
    return state.next_to_review(slice_count(shape), owned, after=widget.current_slice())


def shortcuts_html() -> str:
    """The shortcuts in one line, for the widget (details in :func:`shortcuts_tooltip`)."""
    return "Keys: " + " · ".join(f"<b>{key}</b> {short}"
                                 for key, (short, _, _) in SHORTCUTS.items())


def shortcuts_tooltip() -> str:
    """Every shortcut and what it does."""
    return "\n".join(f"{key}: {what}" for key, (_, what, _) in SHORTCUTS.items())


def bind_review_keys(viewer: Any, widget: Any) -> None:
    """Bind :data:`SHORTCUTS` on ``viewer`` to ``widget`` (held weakly; unbound when gone)."""
    ref = weakref.ref(widget)

    def make(method: str):
        def callback(_viewer: Any) -> None:
            target = ref()
            if target is None or not is_alive(target):
                return
            getattr(target, method)()
        return callback

    for key, (_, _, method) in SHORTCUTS.items():
        viewer.bind_key(key, make(method), overwrite=True)


def report_all_owned() -> None:
    """Tell the person there is nothing left to review."""
    notify_info("Every slice is edited or reviewed: nothing left to review.")
