"""The "Fine-tune" dock widget: teach a stored model from the slices a person corrected.

It lists the slices of a Labels layer that a person edited or marked as reviewed (the review
state lives in ``layer.metadata``, see :mod:`napari_fcnseg.core.review`), fine-tunes a copy of a
stored model on exactly those slices in a napari thread worker, saves the result with its
lineage, and can then re-segment the slices nobody reviewed with the new model.
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_fcnseg.core.review import (
    METADATA_KEY,
    ReviewState,
    edited_slices,
    protected_slices,
    slice_count,
    slice_index,
)

from ._common import (
    is_alive,
    models_changed,
    notify_error,
    notify_info,
    segment_widget,
    validate_image_layer,
)
from .loss_plot import LossPlot
from .segment import MODALITY_KEY, PROBABILITY_KEY

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels

CANCELLED_MESSAGE = "Fine-tuning cancelled; the model is unchanged"
MAX_LABEL = 255  # predictions are stored as uint8
SLICE_ROLE = Qt.ItemDataRole.UserRole


class FinetuneError(Exception):
    """Fine-tuning could not start or failed; the message says why in plain words.

    (Not a ``RuntimeError``: napari's thread worker takes those for a deleted worker.)
    """


class FinetuneCancelled(concurrent.futures.CancelledError):
    """Fine-tuning was cancelled by the user; nothing was saved."""


def _finetune_work(net: Any, image: np.ndarray, labels: np.ndarray, **kwargs: Any):
    """Generator run in the worker thread: :func:`~napari_fcnseg.core.finetune.finetune_iter`."""
    from napari_fcnseg.core.finetune import finetune_iter

    try:
        return (yield from finetune_iter(net, image, labels, **kwargs))
    except RuntimeError as exc:  # e.g. torch failures; see FinetuneError
        raise FinetuneError(str(exc)) from exc


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def dice_table(before: dict[str, float], after: dict[str, float], n_slices: int) -> str:
    """Rich text comparing Dice per class before and after fine-tuning."""
    rows = "".join(
        f"<tr><td>{name}</td><td align='right'>{before.get(name, float('nan')):.3f}</td>"
        f"<td align='right'>{after.get(name, float('nan')):.3f}</td></tr>"
        for name in dict.fromkeys([*before, *after]))
    return (f"Dice on the {n_slices} annotated slice(s):<table cellspacing='4'>"
            f"<tr><th align='left'>class</th><th>before</th><th>after</th></tr>{rows}</table>")


class FinetuneWidget(QWidget):
    """Fine-tune a stored model on the edited and reviewed slices of a Labels layer.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer this widget is docked in.
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        from napari_fcnseg.core.finetune import FinetuneSettings

        self.viewer = napari_viewer
        self._worker: Any = None
        self._future: concurrent.futures.Future | None = None
        self._cancelled = False
        self._error: str | None = None
        self._saved: str | None = None
        self._t_first: float | None = None
        self._last_model: str | None = None
        self._watched: Labels | None = None
        self._point: tuple = ()
        self._auto_name = ""
        self._timer = QTimer(self, singleShot=True, interval=250)
        self._timer.timeout.connect(self.refresh)

        defaults = FinetuneSettings()
        self.image_combo, self.labels_combo = QComboBox(), QComboBox()
        self.model_combo = QComboBox()
        self.slice_list = QListWidget()
        self.slice_list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.slice_list.setMaximumHeight(160)
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.goto_button = QPushButton("Go to slice")
        self.mark_button = QPushButton("Mark current slice reviewed")
        self.mark_button.setToolTip("The slice is correct as it is (also when it is empty): "
                                    "learn from it and never overwrite it.")
        self.unmark_button = QPushButton("Unmark")
        self.unmark_button.setToolTip("Un-review the selected slices (or the current one). "
                                      "Edited slices stay edited.")
        self.refresh_button = QPushButton("Refresh")
        self.steps_spin = QSpinBox(minimum=1, maximum=100_000, value=defaults.steps)
        self.lr_spin = QDoubleSpinBox(decimals=5, minimum=1e-5, maximum=0.1, singleStep=1e-4,
                                      value=defaults.lr)
        self.name_edit = QLineEdit()
        self.finetune_button = QPushButton("Fine-tune")
        self.cancel_button = QPushButton("Cancel", enabled=False)
        self.progress_bar = QProgressBar()
        self.status_label = QLabel("Ready.")
        self.status_label.setWordWrap(True)
        self.loss_plot = LossPlot()
        self.result_label = QLabel()
        self.result_label.setTextFormat(Qt.TextFormat.RichText)
        self.resegment_button = QPushButton("Re-segment unreviewed slices", enabled=False)

        layers = QFormLayout()
        layers.addRow("Image", self.image_combo)
        layers.addRow("Labels", self.labels_combo)
        slice_buttons = QHBoxLayout()
        for button in (self.goto_button, self.unmark_button, self.refresh_button):
            slice_buttons.addWidget(button)
        settings = QFormLayout()
        settings.addRow("Base model", self.model_combo)
        settings.addRow("Steps", self.steps_spin)
        settings.addRow("Learning rate", self.lr_spin)
        settings.addRow("New model name", self.name_edit)
        run_buttons = QHBoxLayout()
        run_buttons.addWidget(self.finetune_button)
        run_buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(layers)
        layout.addWidget(QLabel("Slices to learn from:"))
        layout.addWidget(self.slice_list)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.mark_button)
        layout.addLayout(slice_buttons)
        layout.addLayout(settings)
        layout.addLayout(run_buttons)
        for widget in (self.progress_bar, self.status_label, self.loss_plot, self.result_label,
                       self.resegment_button):
            layout.addWidget(widget)
        layout.addStretch(1)

        self.image_combo.currentTextChanged.connect(self._on_image_changed)
        self.labels_combo.currentTextChanged.connect(self._on_labels_changed)
        self.slice_list.itemDoubleClicked.connect(
            lambda item: self.go_to_slice(item.data(SLICE_ROLE)))
        self.goto_button.clicked.connect(self._on_goto_clicked)
        self.mark_button.clicked.connect(lambda: self.mark_reviewed())
        self.unmark_button.clicked.connect(self._on_unmark_clicked)
        self.refresh_button.clicked.connect(self.refresh)
        self.finetune_button.clicked.connect(lambda: self.finetune())
        self.cancel_button.clicked.connect(self.cancel)
        self.resegment_button.clicked.connect(lambda: self.resegment_unreviewed())
        for event in ("inserted", "removed", "reordered"):
            getattr(self.viewer.layers.events, event).connect(self._on_layers_changed)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._on_layers_changed)
        models_changed.connect(self._on_models_changed)
        self._on_layers_changed()
        self.refresh_models()

    # ------------------------------------------------------------------ layers and models
    @property
    def image_layer(self) -> Image | None:
        """The chosen image layer, or None."""
        name = self.image_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    @image_layer.setter
    def image_layer(self, layer: Image | str) -> None:
        self.image_combo.setCurrentText(layer if isinstance(layer, str) else layer.name)

    @property
    def labels_layer(self) -> Labels | None:
        """The chosen Labels layer, or None."""
        name = self.labels_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    @labels_layer.setter
    def labels_layer(self, layer: Labels | str) -> None:
        self.labels_combo.setCurrentText(layer if isinstance(layer, str) else layer.name)

    def _on_layers_changed(self, event: Any = None) -> None:
        from napari.layers import Image, Labels

        if not is_alive(self):
            return
        if event is not None and getattr(event, "type", "") == "inserted":
            event.value.events.name.connect(self._on_layers_changed)
        for combo, kind in ((self.image_combo, Image), (self.labels_combo, Labels)):
            current = combo.currentText()
            names = [lay.name for lay in self.viewer.layers if isinstance(lay, kind)
                     and not (kind is Image and lay.metadata.get(PROBABILITY_KEY))]
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names[::-1])  # top layer first
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        self._on_labels_changed()

    def _on_image_changed(self, name: str = "") -> None:
        """Propose a free model name, unless the user typed their own."""
        from napari_fcnseg.core.store import ModelError, ModelStore

        if self.name_edit.text() not in ("", self._auto_name):
            return
        image = self.image_layer
        try:
            self._auto_name = ModelStore().unique_name(f"{image.name}-ft" if image else "ft")
        except ModelError:  # an image name with no usable character
            self._auto_name = ModelStore().unique_name("finetuned")
        self.name_edit.setText(self._auto_name)

    def _on_labels_changed(self, name: str = "") -> None:
        labels = self.labels_layer
        if self._watched is not labels:
            events = ("paint", "data", "metadata", "set_data")
            for event in events if self._watched is not None else ():
                getattr(self._watched.events, event).disconnect(self._on_labels_event)
            self._watched = labels
            for event in events if labels is not None else ():
                getattr(labels.events, event).connect(self._on_labels_event)
            image = labels.name.removesuffix(" labels") if labels is not None else ""
            if image and image != labels.name and image in self.viewer.layers:
                self.image_layer = image
            self._select_base_model()
        self._on_image_changed()
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

    def refresh_models(self) -> None:
        """Re-list the stored models usable as a starting point."""
        from napari_fcnseg.core.store import ModelError, ModelStore

        try:
            names = [info.name for info in ModelStore().list() if info.available]
        except (ModelError, OSError) as exc:
            notify_error(f"Cannot read the model store: {exc}")
            return
        current = self.model_combo.currentText()
        self.model_combo.clear()
        self.model_combo.addItems(names)
        if current in names:
            self.model_combo.setCurrentText(current)
        else:
            self._select_base_model()

    def _select_base_model(self) -> None:
        """Pick the model that made the labels, else the Segment widget's, else the default."""
        from napari_fcnseg.core.store import ModelError, ModelStore

        state = self.review_state()
        seg = segment_widget(self.viewer)
        try:
            default = ModelStore().default()
        except (ModelError, OSError):
            default = ""
        for name in (state.model if state else "", seg.model_name if seg else "", default):
            if name and self.model_combo.findText(name) >= 0:
                self.model_combo.setCurrentText(name)
                return

    def _on_models_changed(self) -> None:
        if not is_alive(self):
            models_changed.disconnect(self._on_models_changed)
            return
        self.refresh_models()

    # ----------------------------------------------------------------------- slices
    def review_state(self, create: bool = False) -> ReviewState | None:
        """The chosen Labels layer's review state; with ``create`` make one when it has none."""
        labels = self.labels_layer
        if labels is None:
            return None
        state = ReviewState.from_metadata(labels.metadata)
        return ReviewState() if state is None and create else state

    def _store_state(self, state: ReviewState) -> None:
        self.labels_layer.metadata[METADATA_KEY] = state.to_metadata()
        self.refresh()

    def slice_status(self) -> dict[int, str]:
        """Slice -> "edited", "reviewed" or "edited + reviewed", for every slice to learn from."""
        labels = self.labels_layer
        if labels is None or len(labels.data.shape) < 2 or not labels.data.size:
            return {}
        state = self.review_state(create=True)
        edited = set(edited_slices(np.asarray(labels.data), state))
        n = slice_count(tuple(labels.data.shape))
        reviewed = {k for k in state.reviewed if 0 <= k < n}
        names = {1: "edited", 2: "reviewed", 3: "edited + reviewed"}
        return {k: names[(k in edited) + 2 * (k in reviewed)] for k in sorted(edited | reviewed)}

    def training_slices(self) -> list[int]:
        """The slices fine-tuning learns from: edited or reviewed ones, ascending."""
        return list(self.slice_status())

    def refresh(self) -> None:
        """Re-read the labels and re-list the slices to learn from."""
        if not is_alive(self):
            return
        self._timer.stop()
        labels = self.labels_layer
        status = self.slice_status()
        selected = {item.data(SLICE_ROLE) for item in self.slice_list.selectedItems()}
        self.slice_list.clear()
        for k, what in status.items():
            item = QListWidgetItem(f"{self._slice_name(k)} — {what}")
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

    def _slice_name(self, k: int) -> str:
        shape = tuple(self.labels_layer.data.shape)
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
        shape = tuple(labels.data.shape)
        if len(shape) == 2:
            return 0
        dims = self.viewer.dims
        if dims.ndisplay != 2 or tuple(dims.displayed) != (dims.ndim - 2, dims.ndim - 1):
            raise FinetuneError("Show the image slice by slice (2D view of the Y-X plane) to "
                                "choose the current slice.")
        position = labels.world_to_data(dims.point)[-len(shape):-2]
        lead = [int(np.clip(round(float(p)), 0, n - 1)) for p, n in zip(position, shape[:-2],
                                                                         strict=True)]
        return int(np.ravel_multi_index(lead, shape[:-2]))

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

    # ------------------------------------------------------------------------ fine-tuning
    @property
    def busy(self) -> bool:
        """True while fine-tuning runs."""
        return self._worker is not None

    def _fail(self, future: concurrent.futures.Future, message: str) -> concurrent.futures.Future:
        notify_error(message)
        self.status_label.setText(message)
        if not future.done():
            future.set_exception(FinetuneError(message))
        return future

    def _prepare(self) -> dict[str, Any]:
        """Check the request and gather everything the worker needs; raise FinetuneError."""
        from napari.layers import Image, Labels

        from napari_fcnseg.core.finetune import FinetuneSettings
        from napari_fcnseg.core.store import ModelError, ModelStore, sanitize_name

        image, labels = self.image_layer, self.labels_layer
        if not isinstance(labels, Labels):
            raise FinetuneError("Choose a labels layer (your corrected segmentation) first.")
        problem = validate_image_layer(image) if isinstance(image, Image) else (
            "Choose the image layer the labels were drawn on first.")
        if problem:
            raise FinetuneError(problem)
        if labels.data.ndim < 2 or not labels.data.size:
            raise FinetuneError(f"'{labels.name}' holds no labels (shape {labels.data.shape}).")
        if tuple(image.data.shape) != tuple(labels.data.shape):
            raise FinetuneError(
                f"'{image.name}' {tuple(image.data.shape)} and '{labels.name}' "
                f"{tuple(labels.data.shape)} differ in shape; choose the labels drawn on this "
                "image.")
        slices = self.training_slices()
        if not slices:
            raise FinetuneError("Nothing to learn from yet: correct some slices, or mark slices "
                                "that are already right as reviewed.")
        data = np.array(labels.data, copy=True)  # the user may keep painting meanwhile
        used = data.reshape(-1, *data.shape[-2:])[slices]
        if used.min() < 0 or used.max() > MAX_LABEL:
            raise FinetuneError(f"'{labels.name}' uses label values outside 0..{MAX_LABEL}; "
                                "classes must be numbered 1, 2, 3, ...")
        store, base = ModelStore(), self.model_combo.currentText()
        if not base:
            raise FinetuneError("Choose a base model to start from." if self.model_combo.count()
                                else "No stored model is available to start from; import one "
                                "in the Models panel.")
        try:
            name = sanitize_name(self.name_edit.text().strip())
            taken = [n for n in store.names() if n.casefold() == name.casefold()]
            if taken:
                raise ModelError(f"a model named '{taken[0]}' already exists; choose another name")
            loaded = store.load(base)
        except (ModelError, OSError) as exc:
            raise FinetuneError(f"Cannot fine-tune: {exc}") from exc
        state = self.review_state()
        names = list(state.classes if state and state.classes else loaded.class_names)
        top = int(used.max())
        if top >= len(names):
            names += [f"class {c}" for c in range(len(names), top + 1)]
        if len(names) != len(loaded.class_names):
            notify_info(f"The labels use {len(names)} classes ({', '.join(names)}) but model "
                        f"'{base}' knows {len(loaded.class_names)}; fine-tuning gives it a new "
                        "output layer for them and keeps what it learned.")
        settings = FinetuneSettings(steps=self.steps_spin.value(), lr=self.lr_spin.value())
        return {"net": loaded.net, "image": np.asarray(image.data), "labels": data,
                "slices": slices, "class_names": names, "settings": settings,
                "modality": str(image.metadata.get(MODALITY_KEY, "auto")),
                "base": base, "name": name, "image_name": image.name}

    def finetune(self) -> concurrent.futures.Future:
        """Fine-tune the base model on the edited and reviewed slices in the background.

        Returns
        -------
        concurrent.futures.Future
            Resolves to the saved model's name; holds :class:`FinetuneError` when the request
            was refused or training failed, and :class:`FinetuneCancelled` after :meth:`cancel`.
            Problems are also shown as notifications; the labels are never changed.
        """
        from napari.qt.threading import create_worker

        future: concurrent.futures.Future = concurrent.futures.Future()
        if self.busy:
            return self._fail(future, "Fine-tuning is already running; wait or cancel it.")
        try:
            job = self._prepare()
        except FinetuneError as exc:
            return self._fail(future, str(exc))
        keys = ("slices", "class_names", "settings", "modality")
        worker = create_worker(
            _finetune_work, job["net"], job["image"], job["labels"],
            **{k: job[k] for k in keys}, _ignore_errors=True,
            _progress={"total": job["settings"].steps + 2, "desc": f"Fine-tuning {job['name']}"})
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(lambda result: self._on_returned(result, job))
        worker.errored.connect(self._on_errored)
        worker.aborted.connect(self.cancel)  # also when cancelled from napari's activity dock
        worker.finished.connect(self._on_finished)
        self._worker, self._future, self._cancelled = worker, future, False
        self._error = self._saved = self._t_first = None
        self.loss_plot.clear()
        self.loss_plot.set_total(job["settings"].steps)
        self.result_label.clear()
        self.progress_bar.setRange(0, job["settings"].steps)
        self.progress_bar.setValue(0)
        self._set_busy(True)
        self.status_label.setText(f"Fine-tuning '{job['base']}' on {len(job['slices'])} "
                                  "slice(s)...")
        worker.start()
        return future

    def cancel(self) -> None:
        """Stop fine-tuning after the current step: nothing is saved, the labels are untouched."""
        if self._worker is None or self._saved is not None:
            return
        self._cancelled = True
        self._worker.quit()
        self.status_label.setText("Cancelling...")

    def _set_busy(self, busy: bool) -> None:
        self.finetune_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        if busy:
            self.resegment_button.setEnabled(False)

    def _on_yielded(self, record: Any) -> None:
        if not is_alive(self) or self._cancelled:
            return
        if record.loss is None:
            self.status_label.setText(record.message.capitalize() + "...")
            return
        now = time.monotonic()
        if self._t_first is None or record.step <= 1:
            self._t_first, eta = now, "estimating time left"
        else:
            per_step = (now - self._t_first) / (record.step - 1)
            eta = f"about {_duration(per_step * (record.total - record.step))} left"
        self.loss_plot.add_point(record.step, record.loss, record.dice)
        self.progress_bar.setRange(0, max(1, record.total))
        self.progress_bar.setValue(record.step)
        self.status_label.setText(f"Step {record.step} of {record.total}, {eta}.")

    def _on_errored(self, exc: BaseException) -> None:
        self._error = str(exc)

    def _on_returned(self, result: Any, job: dict[str, Any]) -> None:
        """Save the fine-tuned model (main thread); the future resolves when the worker ends."""
        from napari_fcnseg.core.store import ModelError, ModelStore

        if self._cancelled:
            return
        meta = {**result.metadata(parent=job["base"]), "image": job["image_name"]}
        try:
            self._saved = ModelStore().save(result.net, job["name"], meta).name
        except (ModelError, OSError) as exc:
            self._error = f"the model could not be saved: {exc}"
            return
        self._last_model = self._saved
        models_changed.emit()
        seg = segment_widget(self.viewer)
        if seg is not None:
            seg.select_model(self._saved)
        if result.stopped:
            notify_info(f"Fine-tuning stopped early: {result.stopped}.")
        if is_alive(self):
            self.result_label.setText(dice_table(result.dice_before, result.dice_after,
                                                 len(result.slices)))
            self.status_label.setText(f"Saved model '{self._saved}' (from '{job['base']}', "
                                      f"{result.steps} steps).")
            self.name_edit.clear()
            self._on_image_changed()  # a fresh name for the next round

    def _on_finished(self) -> None:
        future, self._worker = self._future, None
        if is_alive(self):
            self._set_busy(False)
            self.resegment_button.setEnabled(self._last_model is not None)
        if future is None or future.done():
            return
        if self._saved is not None:
            future.set_result(self._saved)
        elif self._cancelled:
            future.set_exception(FinetuneCancelled(CANCELLED_MESSAGE))
            notify_info(CANCELLED_MESSAGE + ".")
            if is_alive(self):
                self.status_label.setText(CANCELLED_MESSAGE + ".")
                self.progress_bar.setValue(0)
        else:
            self._fail(future, f"Fine-tuning failed: {self._error or 'no result came back'}")

    # ------------------------------------------------------------------------ re-segment
    def resegment_unreviewed(self) -> concurrent.futures.Future:
        """Re-segment every slice that is neither edited nor reviewed with the new model.

        Returns
        -------
        concurrent.futures.Future
            The Segment widget's future (resolves to the slices written), or one holding
            :class:`FinetuneError` when re-segmenting is not possible.
        """
        future: concurrent.futures.Future = concurrent.futures.Future()
        seg = segment_widget(self.viewer)
        image, labels = self.image_layer, self.labels_layer
        if seg is None:
            return self._fail(future, "Open the Segment widget to re-segment the slices.")
        if image is None or labels is None:
            return self._fail(future, "Choose the image and its labels layer first.")
        seg.image_layer = image
        if seg.labels_layer is not labels:
            return self._fail(future, f"The Segment widget writes the segmentation of "
                              f"'{image.name}' into '{image.name} labels', not into "
                              f"'{labels.name}'; rename the labels layer to re-segment it.")
        model = self._last_model or self.model_combo.currentText()
        if not seg.select_model(model):
            return self._fail(future, f"Model '{model}' is not available.")
        state = self.review_state(create=True)
        keep = set(protected_slices(np.asarray(labels.data), state))
        todo = [k for k in range(slice_count(tuple(labels.data.shape))) if k not in keep]
        if not todo:
            notify_info("Every slice is edited or reviewed; nothing to re-segment.")
            future.set_result([])
            return future
        self.status_label.setText(f"Re-segmenting {len(todo)} unreviewed slice(s) with "
                                  f"'{model}'...")
        return seg.segment(slices=todo)
