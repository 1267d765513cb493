"""The "Segment" dock widget: run a stored model on an image layer into an editable Labels layer.

Prediction runs in a napari thread worker (:mod:`._segment_work`, run by a
:class:`~._job.BackgroundJob`), so the viewer stays responsive; the result is merged into the
labels on the main thread (:mod:`._segment_output`), so slices a person edited or reviewed are
never overwritten unless asked, and what such an overwrite replaced can be put back with
"Undo overwrite".
"""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_fcnseg.class_style import legend_html
from napari_fcnseg.layer_keys import MODALITY_KEY, PROBABILITY_KEY

from ._anchor_choice import AnchorChoice
from ._common import (
    current_slice,
    find_labels_layer,
    image_array,
    image_layers,
    is_alive,
    layer_named,
    notify_error,
)
from ._job import BackgroundJob
from ._model_combo import ModelCombo
from ._segment_anchor import anchor_request
from ._segment_checks import SegmentError, check_request, model_classes
from ._segment_output import Merged, merge_into_layers
from ._segment_undo import LastOverwrite, UndoError
from ._segment_work import SegmentOutcome, predict_work
from .session import real_viewer, session_for

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels

    from napari_fcnseg.core.progress import Progress

SCOPES = {"Whole volume": "volume", "Current slice": "slice"}
#: Seconds between progress-bar updates; each repaints the bar at once, pausing the viewer.
PROGRESS_INTERVAL = 0.2


def _describe_error(exc: BaseException) -> str:
    """The message for an exception raised while segmenting in the worker."""
    from napari_fcnseg.core.store import ModelError

    return str(exc) if isinstance(exc, ModelError) else f"Segmentation failed: {exc}"


class SegmentWidget(QWidget):
    """Segment the chosen image layer with a stored model.

    The widget is its viewer's segmenter (see :mod:`.session`): it follows the session's
    model, so a model fine-tuned in the same viewer is the one it segments with next.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer this widget is docked in (or napari's proxy of it).
    """

    batch_size: int | None = None  # predict decides: 1 slice per pass on the CPU

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        from napari_fcnseg.core.device import available_devices

        self.viewer = real_viewer(napari_viewer)  # layers compared with `is` (see .session)
        self.session = session_for(napari_viewer)
        self._models: dict[str, Any] = {}  # name -> LoadedModel, loaded by a worker
        self._models_version = 0  # counts store changes; a load from before one is not kept

        self.image_combo = QComboBox()
        # the session's model is the fallback: a model fine-tuned here before this widget opened
        self.model_combo = ModelCombo(self.session.store,
                                      preferred=lambda: [self.session.model])
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.scope_combo = QComboBox()
        self.scope_combo.addItems(list(SCOPES))
        self.image_combo.setToolTip("The scan to segment (CT or MR image layer).")
        self.model_combo.setToolTip("The model that segments: the bundled one or one you "
                                    "fine-tuned (see the Models panel).")
        self.device_combo.setToolTip("Where the network runs: the CPU always works; a GPU "
                                     "(cuda, mps) is faster when there is one.")
        self.scope_combo.setToolTip("The slice shown now, or every slice of the volume.")
        self.probability_check = QCheckBox("Add probability layer")
        self.probability_check.setToolTip("One layer per class with the model's confidence "
                                          "(bright = sure it is that class).")
        self.uncertainty_check = QCheckBox("Add uncertainty layer")
        self.uncertainty_check.setToolTip(
            "Shows where the model is unsure (bright = unsure): the places to check first.")
        self.overwrite_check = QCheckBox("Overwrite edited/reviewed slices")
        self.overwrite_check.setToolTip(
            "Off: slices you painted or marked as reviewed keep your labels. On: they are "
            "replaced too (Undo overwrite puts them back).")
        self.anchor_combo = AnchorChoice()
        self.undo_button = QPushButton("Undo overwrite")
        self.undo_button.setToolTip("Put back the edited/reviewed slices that the latest run "
                                    "replaced ('Overwrite' ticked), unless you changed them since.")
        self.undo_button.setEnabled(False)
        self._undo = LastOverwrite()
        self.segment_button = QPushButton("Segment")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setValue(0)
        self.status_label = QLabel("Ready.")
        self.status_label.setWordWrap(True)
        self.legend_label = QLabel()
        self.legend_label.setWordWrap(True)
        self.legend_label.setToolTip("The classes of the chosen model, in the colours of the "
                                     "labels layer it writes.")
        self.job = BackgroundJob(
            self, SegmentError, self.status_label, set_busy=self._set_busy,
            on_progress=self._on_progress, describe_error=_describe_error,
            on_cancelled=self._on_cancelled, progress_interval=PROGRESS_INTERVAL)

        form = QFormLayout()
        for label, combo in (("Image", self.image_combo), ("Model", self.model_combo),
                             ("Device", self.device_combo), ("Scope", self.scope_combo),
                             ("Keep objects", self.anchor_combo)):
            form.addRow(label, combo)
        form.addRow("Classes", self.legend_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.segment_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for widget in (self.probability_check, self.uncertainty_check, self.overwrite_check,
                       self.undo_button):
            layout.addWidget(widget)
        layout.addLayout(buttons)
        for widget in (self.progress_bar, self.status_label):
            layout.addWidget(widget)
        layout.addStretch(1)

        self.segment_button.clicked.connect(
            lambda: self.segment(SCOPES[self.scope_combo.currentText()]))
        self.cancel_button.clicked.connect(self.cancel)
        self.undo_button.clicked.connect(self.undo_overwrite)
        self.model_combo.currentTextChanged.connect(self.session.select_model)
        self.model_combo.currentTextChanged.connect(self._show_legend)
        for event in ("inserted", "removed", "reordered"):
            getattr(self.viewer.layers.events, event).connect(self._on_layers_changed)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._on_layers_changed)
        self.model_combo.store_changed.connect(self._forget_models)
        self.session.model_selected.connect(self._on_model_selected)
        self.session.set_segmenter(self)
        self.refresh_images()
        self.refresh_models()
        self._show_legend()

    # ----------------------------------------------------------------- layers and models
    def refresh_images(self) -> None:
        """Re-list the viewer's image layers, keeping the current choice when it still exists."""
        current = self.image_combo.currentText()
        names = [layer.name for layer in image_layers(self.viewer)
                 if not layer.metadata.get(PROBABILITY_KEY)]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)

    def _on_layers_changed(self, event: Any = None) -> None:
        if not is_alive(self):
            return
        if event is not None and getattr(event, "type", "") == "inserted":
            event.value.events.name.connect(self._on_layers_changed)
        if self._undo.forget_if_removed(self.viewer):
            self.undo_button.setEnabled(False)
        self.refresh_images()

    def refresh_models(self) -> None:
        """Re-list the stored models, keeping the current choice, else the session's or default.

        A changed choice (e.g. the chosen model was deleted) reaches the session and legend.
        """
        self.model_combo.refresh()

    def _forget_models(self) -> None:
        """The store changed: models loaded before may have been renamed or replaced."""
        self._models.clear()
        self._models_version += 1

    def _show_legend(self, name: str = "") -> None:
        """Show the chosen model's class names and colours."""
        try:
            names = self._model_classes(name or self.model_name)
        except SegmentError:
            names = []
        self.legend_label.setText(legend_html(names) if names else "")
        self.anchor_combo.set_classes(names)

    def _on_model_selected(self, name: str) -> None:
        if not is_alive(self):
            self.session.model_selected.disconnect(self._on_model_selected)
        elif name != self.model_name:
            self.select_model(name)

    def select_model(self, name: str) -> bool:
        """Choose the model ``name``; returns False (with a notification) when it is unknown."""
        if self.model_combo.findText(name) < 0:
            self.refresh_models()
        if self.model_combo.findText(name) < 0:
            notify_error(f"There is no model named '{name}'.")
            return False
        self.model_combo.setCurrentText(name)
        return True

    @property
    def model_name(self) -> str:
        """Name of the chosen model."""
        return self.model_combo.currentText()

    @property
    def image_layer(self) -> Image | None:
        """The chosen image layer, or None."""
        name = self.image_combo.currentText()
        return layer_named(self.viewer, name)

    @image_layer.setter
    def image_layer(self, layer: Image | str) -> None:
        self.refresh_images()
        self.image_combo.setCurrentText(layer if isinstance(layer, str) else layer.name)

    @property
    def labels_layer(self) -> Labels | None:
        """The Labels layer receiving the chosen image's segmentation, if it exists yet."""
        image = self.image_layer
        return None if image is None else find_labels_layer(self.viewer, image)

    def current_slice(self, image: Image | None = None) -> int:
        """Index (as in :mod:`napari_fcnseg.core.predict`) of the slice shown for ``image``."""
        return current_slice(self.viewer, image or self.image_layer)

    def _model_classes(self, name: str) -> list[str]:
        """Class names of stored model ``name``; raise SegmentError if it is unusable."""
        return model_classes(self.session.store, name, self._models)

    # ----------------------------------------------------------------------- segmentation
    @property
    def busy(self) -> bool:
        """True while a segmentation runs."""
        return self.job.busy

    def segment(self, scope: str = "volume",
                slices: list[int] | None = None) -> concurrent.futures.Future:
        """Segment the chosen image in the background.

        Parameters
        ----------
        scope : {"volume", "slice"}
            The whole image, or only the slice currently shown.
        slices : list of int, optional
            Explicit slices (as in :mod:`napari_fcnseg.core.predict`); overrides ``scope``.

        Returns
        -------
        concurrent.futures.Future
            Resolves to the list of slices written once the labels are merged; holds a
            :class:`SegmentError` when the request was refused or failed, and is cancelled by
            :meth:`cancel`. Errors are also shown as notifications.
        """
        if self.busy:
            return self.job.refuse("A segmentation is already running; wait or cancel it.")
        image = self.image_layer
        try:
            classes, slices = check_request(self.viewer, image, scope, slices,
                                            self.model_name, self._model_classes)
        except SegmentError as exc:
            return self.job.refuse(str(exc))
        assert image is not None  # check_request refuses a missing image
        modality = str(image.metadata.get(MODALITY_KEY, "auto"))
        name = self.model_name
        request = {"image": image, "model": name, "classes": classes,
                   "overwrite": self.overwrite_check.isChecked()}
        anchor = anchor_request(self.labels_layer, self.anchor_combo.classes(), classes)
        if request["overwrite"] and anchor is not None:
            return self.job.refuse("Keeping only objects that touch reviewed slices needs "
                                   "those slices kept: untick 'Overwrite edited/reviewed "
                                   "slices' or keep every object.")
        version = self._models_version
        future = self.job.start(
            predict_work, self.session.store, name, self._models.get(name), image_array(image),
            slices, modality,
            self.probability_check.isChecked(), self.device_combo.currentText(),
            self.batch_size, self.uncertainty_check.isChecked(), anchor,
            desc=f"Segmenting {image.name}",
            on_returned=lambda outcome: self._on_returned(outcome, request, version))
        count = "all" if slices is None else str(len(slices))
        self.status_label.setText(f"Segmenting {count} slice(s) of '{image.name}' "
                                  f"with '{self.model_name}'...")
        return future

    def cancel(self) -> None:
        """Stop the running segmentation after the current batch; the labels stay untouched.

        Once the labels are being written it is too late, and nothing happens.
        """
        self.job.cancel()

    def _set_busy(self, busy: bool) -> None:
        self.segment_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.undo_button.setEnabled(not busy and self._undo.available)
        if busy:
            self.progress_bar.setRange(0, 0)

    def _on_progress(self, record: Progress) -> None:
        self.progress_bar.setRange(0, max(1, record.total))
        self.progress_bar.setValue(record.step)
        self.status_label.setText(record.message)

    def _on_cancelled(self, future: concurrent.futures.Future) -> None:
        future.cancel()
        if is_alive(self):
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)
            self.status_label.setText("Cancelled; the labels were not changed.")

    def _on_returned(self, outcome: SegmentOutcome, request: dict, models_version: int) -> None:
        if outcome.loaded is not None and models_version == self._models_version:
            self._models[request["model"]] = outcome.loaded  # the store did not change meanwhile
        future = self.job.future
        if self.job.cancelled or future is None or future.done() or not is_alive(self):
            return
        try:
            merged = merge_into_layers(self.viewer, outcome, **request)
        except Exception as exc:  # any failure becomes a notification, never a crash
            self.job.reject(f"Could not write the segmentation: {exc}")
            return
        self._undo.record(merged)
        self.cancel_button.setEnabled(False)  # the labels are written: too late to cancel
        self.job.commit()
        # napari has just built the layer's visuals (most of 0.1 s on a laptop CPU): let the
        # viewer catch up before redrawing this widget (a progress bar repaints at once)
        QTimer.singleShot(0, lambda: self._report(merged))

    def _report(self, merged: Merged) -> None:
        """Show what a run wrote; its future then resolves to the slices written."""
        if is_alive(self):
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(1)
            message = f"Wrote {len(merged.written)} slice(s) into '{merged.layer.name}'"
            if merged.kept:
                message += f"; kept {len(merged.kept)} edited/reviewed slice(s) unchanged"
            if merged.anchor_note:
                message += f"; {merged.anchor_note}"
            if merged.undo is not None and merged.undo.before:
                message += (f"; replaced {len(merged.undo.before)} edited/reviewed slice(s) "
                            "(Undo overwrite puts them back)")
            self.status_label.setText(message + ".")
        self.job.resolve(merged.written)

    def undo_overwrite(self) -> list[int]:
        """Put back the edited/reviewed slices that the last overwriting run replaced.

        Slices changed after that run are left as they are. Returns the slices put back.
        """
        if self._undo.available and self.busy:
            notify_error("Wait for the segmentation to finish (or cancel it) before undoing.")
            return []
        self.undo_button.setEnabled(False)
        try:
            restored, message = self._undo.put_back(self.viewer)
        except UndoError as exc:
            notify_error(str(exc))
            return []
        self.status_label.setText(message)
        return restored
