"""The review half of the "Review and Fine-tune" dock widget: the slices a person vouches for.

:class:`SliceReviewWidget` pairs an image with its Labels layer, lists the slices of the labels
that a person edited or marked as reviewed (the review state lives in ``layer.metadata``, see
:mod:`napari_fcnseg.core.review`), marks and unmarks slices, moves the viewer to them, and keeps
the list current while the person paints. It is the upper part of
:class:`~.finetune.FinetuneWidget`, which holds one and adds the fine-tuning controls below it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_fcnseg.core.review import (
    METADATA_KEY,
    ReviewState,
    edited_slices,
    slice_count,
    slice_index,
)

from ._common import current_slice, is_alive, notify_error
from ._guided import (
    bind_review_keys,
    next_to_review,
    report_all_owned,
    shortcuts_html,
    shortcuts_tooltip,
)
from ._layer_choice import LayerChoice
from .session import real_viewer

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels

SLICE_ROLE = Qt.ItemDataRole.UserRole
#: Labels layer events after which the list of slices may be out of date (older napari has no
#: ``metadata`` event: :func:`_labels_events` skips what a layer does not emit).
LABELS_EVENTS = ("paint", "data", "metadata", "set_data")


def _labels_events(labels: Labels | None) -> list:
    """The emitters of ``labels`` named in :data:`LABELS_EVENTS` (none for no layer)."""
    if labels is None:
        return []
    return [e for e in (getattr(labels.events, n, None) for n in LABELS_EVENTS) if e is not None]


class FinetuneError(Exception):
    """Reviewing or fine-tuning could not start or failed; the message says why in plain words.

    (Not a ``RuntimeError``: napari's thread worker takes those for a deleted worker.)
    """


class SliceReviewWidget(QWidget):
    """Review the slices of a Labels layer: list, mark and visit the ones to learn from.

    Which image and Labels layer are reviewed is :attr:`layers`' concern (see
    :mod:`._layer_choice`); this widget lists, marks and visits the slices of those labels and
    keeps the list current while the person paints.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer this widget is docked in (or napari's proxy of it).
    """

    #: Emitted when another Labels layer is under review.
    labels_changed = Signal()
    #: Emitted after the image and labels layers were chosen anew, also when neither changed.
    layers_chosen = Signal()
    #: Emitted after the slices were listed again, with how many will be learned from.
    refreshed = Signal(int)

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = real_viewer(napari_viewer)  # layers compared with `is` (see .session)
        self._watched: Labels | None = None  # the labels layer whose events we listen to
        self._point: tuple = ()
        self._timer = QTimer(self, singleShot=True, interval=250)
        self._timer.timeout.connect(self.refresh)

        self.layers = LayerChoice(self.viewer, self)
        self.image_combo, self.labels_combo = self.layers.image_combo, self.layers.labels_combo
        self.slice_list = QListWidget()
        self.slice_list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.slice_list.setMaximumHeight(120)
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.goto_button = QPushButton("Go to slice")
        self.goto_button.setToolTip("Show the slice selected in the list.")
        self.mark_button = QPushButton("Mark reviewed")
        self.mark_button.setToolTip("Mark the slice shown now as reviewed: it is correct as it "
                                    "is (also when it is empty): "
                                    "learn from it and never overwrite it.")
        self.unmark_button = QPushButton("Unmark")
        self.unmark_button.setToolTip("Un-review the selected slices (or the current one). "
                                      "Edited slices stay edited.")
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Read the labels again (they are also re-read a moment "
                                       "after every edit).")
        self.next_button = QPushButton("Next to review")
        self.next_button.setToolTip("Go to the slice the model was least sure about among those "
                                    "nobody edited or reviewed yet.")
        self.shortcuts_label = QLabel(shortcuts_html())
        self.shortcuts_label.setToolTip(shortcuts_tooltip())
        self.shortcuts_label.setWordWrap(True)
        self._visited: list[int] = []

        layers = QFormLayout()
        layers.addRow("Image", self.image_combo)
        layers.addRow("Labels", self.labels_combo)
        slice_buttons = QHBoxLayout()
        for button in (self.goto_button, self.unmark_button, self.refresh_button):
            slice_buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)  # a part of the dock, not a frame of its own
        layout.addLayout(layers)
        layout.addWidget(QLabel("Slices to learn from:"))
        layout.addWidget(self.slice_list)
        layout.addWidget(self.summary_label)
        review_buttons = QHBoxLayout()
        review_buttons.addWidget(self.next_button)
        review_buttons.addWidget(self.mark_button)
        layout.addLayout(review_buttons)
        layout.addLayout(slice_buttons)
        layout.addWidget(self.shortcuts_label)

        self.layers.chosen.connect(self._on_labels_changed)
        self.slice_list.itemDoubleClicked.connect(
            lambda item: self.go_to_slice(item.data(SLICE_ROLE)))
        self.goto_button.clicked.connect(self._on_goto_clicked)
        self.mark_button.clicked.connect(lambda: self.mark_reviewed())
        self.unmark_button.clicked.connect(self._on_unmark_clicked)
        self.refresh_button.clicked.connect(self.refresh)
        self.next_button.clicked.connect(lambda: self.go_to_next_to_review())
        bind_review_keys(self.viewer, self)
        self.layers.refresh()

    # ------------------------------------------------------------------ choice of layers
    @property
    def image_layer(self) -> Image | None:
        """The chosen image layer, or None; setting one reviews that image's own labels."""
        return self.layers.image_layer

    @image_layer.setter
    def image_layer(self, layer: Image | str) -> None:
        self.layers.image_layer = layer

    @property
    def labels_layer(self) -> Labels | None:
        """The Labels layer under review, or None; one set here stays until an image is set."""
        return self.layers.labels_layer

    @labels_layer.setter
    def labels_layer(self, layer: Labels | str) -> None:
        self.layers.labels_layer = layer

    def _on_labels_changed(self, follow_image: bool = True, defer_refresh: bool = False) -> None:
        """Take in the Labels layer under review: follow its edits and list its slices.

        With ``follow_image``, a newly reviewed layer also chooses the image it was made for;
        with ``defer_refresh`` the list is refreshed after the usual short delay.
        """
        labels = self.labels_layer
        if self._watched is not labels:
            for emitter in _labels_events(self._watched):
                emitter.disconnect(self._on_labels_event)
            self._watched = labels
            for emitter in _labels_events(labels):
                emitter.connect(self._on_labels_event)
            if follow_image and labels is not None:
                self.layers.show_image_of(labels)
            self.labels_changed.emit()
        self.layers_chosen.emit()
        if defer_refresh:
            self._timer.start()
        else:
            self.refresh()

    def _on_labels_event(self, event: Any = None) -> None:
        """Schedule a refresh of the slice list when the labels change (not when slicing)."""
        if not is_alive(self):
            return
        point = tuple(self.viewer.dims.point)
        if getattr(event, "type", "") == "set_data" and point != self._point:
            self._point = point  # the viewer moved to another slice; the data did not change
            return
        self._timer.start()

    # ----------------------------------------------------------------------- slices
    @overload
    def review_state(self, create: Literal[True]) -> ReviewState: ...

    @overload
    def review_state(self, create: bool = False) -> ReviewState | None: ...

    def review_state(self, create: bool = False) -> ReviewState | None:
        """The chosen Labels layer's review state.

        With ``create``, an empty state when the layer has none (or no Labels layer is chosen).
        """
        labels = self.labels_layer
        state = None if labels is None else ReviewState.from_metadata(labels.metadata)
        return ReviewState() if state is None and create else state

    def _store_state(self, state: ReviewState) -> None:
        labels = self.labels_layer
        if labels is not None:
            labels.metadata[METADATA_KEY] = state.to_metadata()
        self.refresh()

    def slice_status(self) -> dict[int, str]:
        """Slice -> "edited", "reviewed" or "edited + reviewed", for every slice to learn from."""
        labels = self.labels_layer
        if labels is None or len(labels.data.shape) < 2 or not labels.data.size:
            return {}
        state = self.review_state(create=True)
        edited = set(edited_slices(labels.data, state))  # slice by slice: zarr stays on disk
        n = slice_count(tuple(labels.data.shape))
        reviewed = {k for k in state.reviewed if 0 <= k < n}
        names = {1: "edited", 2: "reviewed", 3: "edited + reviewed"}
        return {k: names[(k in edited) + 2 * (k in reviewed)] for k in sorted(edited | reviewed)}

    def training_slices(self) -> list[int]:
        """The slices fine-tuning learns from: edited or reviewed ones, ascending."""
        return list(self.slice_status())

    def refresh(self) -> None:
        """Re-read the labels and re-list the slices to learn from (then :attr:`refreshed`)."""
        if not is_alive(self):
            return
        self._timer.stop()
        labels = self.labels_layer
        status = self.slice_status()
        shape = () if labels is None else tuple(labels.data.shape)
        selected = {item.data(SLICE_ROLE) for item in self.slice_list.selectedItems()}
        self.slice_list.clear()
        for k, what in status.items():
            item = QListWidgetItem(f"{self._slice_name(shape, k)} — {what}")
            item.setData(SLICE_ROLE, k)
            self.slice_list.addItem(item)
            item.setSelected(k in selected)
        if labels is None:
            self.summary_label.setText("Choose a labels layer.")
        else:
            n = slice_count(tuple(labels.data.shape)) if labels.data.ndim >= 2 else 0
            self.summary_label.setText(
                f"{len(status)} of {n} slice(s) will be learned from. Paint corrections, or mark "
                "slices that are already right as reviewed.")
        self.refreshed.emit(len(status))

    @staticmethod
    def _slice_name(shape: tuple[int, ...], k: int) -> str:
        if len(shape) == 2:
            return "the image"
        lead = slice_index(shape, k)
        return f"slice {k}" if len(lead) == 1 else f"slice {k} ({', '.join(map(str, lead))})"

    def current_slice(self) -> int:
        """The slice of the labels layer shown in the viewer.

        Raises
        ------
        FinetuneError
            If no labels layer is chosen or the viewer does not show its Y-X plane.
        """
        labels = self.labels_layer
        if labels is None:
            raise FinetuneError("Choose a labels layer first.")
        dims = self.viewer.dims
        if labels.data.ndim != 2 and (
                dims.ndisplay != 2 or tuple(dims.displayed) != (dims.ndim - 2, dims.ndim - 1)):
            raise FinetuneError("Show the image slice by slice (2D view of the Y-X plane) to "
                                "choose the current slice.")
        return current_slice(self.viewer, labels)

    def go_to_slice(self, k: int) -> None:
        """Move the viewer to slice ``k`` of the labels layer (nothing to do for a 2D image)."""
        labels = self.labels_layer
        if labels is None or labels.data.ndim <= 2:
            return
        shape = tuple(labels.data.shape)
        world = labels.data_to_world([*slice_index(shape, int(k)), shape[-2] / 2, shape[-1] / 2])
        offset = self.viewer.dims.ndim - len(shape)
        for axis in range(len(shape) - 2):
            self.viewer.dims.set_point(offset + axis, float(world[axis]))

    def go_to_next_to_review(self) -> int | None:
        """Go to the most uncertain slice nobody edited or reviewed; return it (None if none)."""
        k = next_to_review(self)
        if k is None:
            if self.labels_layer is not None:
                report_all_owned()
            return None
        self._visited.append(self.current_slice())
        self.go_to_slice(k)
        return k

    def go_back(self) -> int | None:
        """Return to the slice shown before the last "next slice to review"."""
        if not self._visited:
            return None
        k = self._visited.pop()
        self.go_to_slice(k)
        return k

    def _on_goto_clicked(self) -> None:
        item = (self.slice_list.selectedItems() or [self.slice_list.item(0)])[0]
        if item is not None:
            self.go_to_slice(item.data(SLICE_ROLE))

    def _chosen_slices(self, slices: list[int] | None) -> list[int] | None:
        labels = self.labels_layer
        try:
            if labels is None or labels.data.ndim < 2 or not labels.data.size:
                raise FinetuneError("Choose a labels layer that holds data first.")
            if slices is None:
                return [self.current_slice()]
            n = slice_count(tuple(labels.data.shape))
            chosen = sorted({int(k) for k in slices})
            if any(not 0 <= k < n for k in chosen):
                raise FinetuneError(f"Slices must lie between 0 and {n - 1}.")
            return chosen
        except FinetuneError as exc:
            notify_error(str(exc))
            return None

    def mark_reviewed(self, slices: list[int] | None = None) -> list[int]:
        """Mark ``slices`` (default: the current slice) as reviewed; returns the slices marked."""
        chosen = self._chosen_slices(slices)
        if not chosen:
            return []
        state = self.review_state(create=True)
        state.mark_reviewed(chosen)
        self._store_state(state)
        return chosen

    def unmark(self, slices: list[int] | None = None) -> list[int]:
        """Remove ``slices`` (default: the current slice) from the reviewed ones."""
        chosen = self._chosen_slices(slices)
        state = self.review_state()
        if not chosen or state is None:
            return []
        state.mark_reviewed(chosen, reviewed=False)
        self._store_state(state)
        return chosen

    def _on_unmark_clicked(self) -> None:
        selected = [item.data(SLICE_ROLE) for item in self.slice_list.selectedItems()]
        self.unmark(selected or None)
