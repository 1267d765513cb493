"""The "Review and Fine-tune" dock widget: teach a stored model from the slices a person corrected.

The review half, which lists the slices of a Labels layer that a person edited or marked as
reviewed, is a :class:`~._slice_review.SliceReviewWidget` the dock holds. This module adds the
rest: it fine-tunes a copy of a stored model on exactly those slices in a napari thread worker,
saves the result with its lineage, and can then re-segment the slices nobody reviewed with the
new model. The model is saved and selected once trained; the held-out check after it rewrites
its card and, if it is not better, selects the starting model again.
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from napari_fcnseg.core.review import METADATA_KEY

from ._common import is_alive, notify_info
from ._finetune_form import STROKES_ONLY, FinetuneForm, format_duration
from ._finetune_job import finetune_work, keep_unchecked, prepare_round, save_result, update_card
from ._finetune_report import dice_table, verdict
from ._job import BackgroundJob
from ._model_combo import ModelCombo
from ._resegment import resegment_unreviewed
from ._slice_review import FinetuneError, SliceReviewWidget
from ._strokes import StrokeTracker
from .loss_plot import LossPlot
from .session import models_changed, session_for

if TYPE_CHECKING:
    import napari

    from napari_fcnseg.core.progress import Progress

__all__ = ["CANCELLED_MESSAGE", "FinetuneCancelled", "FinetuneError", "FinetuneWidget",
           "dice_table"]

CANCELLED_MESSAGE = "Fine-tuning cancelled; the model is unchanged"


class FinetuneCancelled(concurrent.futures.CancelledError):
    """Fine-tuning was cancelled by the user; nothing was saved."""


def _from_review(name: str, settable: bool = False) -> property:
    """A property passing ``name`` on to the widget's :attr:`~FinetuneWidget.review` part."""
    def get(self: FinetuneWidget) -> Any:
        return getattr(self.review, name)

    def set_(self: FinetuneWidget, value: Any) -> None:
        setattr(self.review, name, value)

    return property(get, set_ if settable else None,
                    doc=f"The review part's ``{name}`` (see :class:`SliceReviewWidget`).")


#: Controls of the review part that the dock exposes under the same names.
REVIEW_CONTROLS = ("image_combo", "labels_combo", "slice_list", "summary_label", "goto_button",
                   "mark_button", "unmark_button", "refresh_button", "next_button",
                   "shortcuts_label")


class FinetuneWidget(QWidget):
    """Fine-tune a stored model on the edited and reviewed slices of a Labels layer.

    The slice review (choice of image and labels, the list of slices to learn from, marking
    slices reviewed) is a :class:`~._slice_review.SliceReviewWidget`, :attr:`review`, at the top
    of the dock; its layers, controls and slice methods are also reachable here under the same
    names. A model it saves becomes the viewer's model to segment with, and re-segmenting goes
    through the viewer's Segment widget; both are found through the viewer's session (see
    :mod:`.session`).

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer this widget is docked in (or napari's proxy of it).
    """

    image_layer = _from_review("image_layer", settable=True)
    labels_layer = _from_review("labels_layer", settable=True)
    review_state = _from_review("review_state")
    slice_status = _from_review("slice_status")
    training_slices = _from_review("training_slices")
    current_slice = _from_review("current_slice")
    go_to_slice = _from_review("go_to_slice")
    go_to_next_to_review = _from_review("go_to_next_to_review")
    go_back = _from_review("go_back")
    mark_reviewed = _from_review("mark_reviewed")
    unmark = _from_review("unmark")

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.review = SliceReviewWidget(napari_viewer)
        self.viewer = self.review.viewer
        for attr in REVIEW_CONTROLS:
            setattr(self, attr, getattr(self.review, attr))
        self.session = session_for(napari_viewer)
        self._t_first: float | None = None
        self._last_model: str | None = None
        self._round: dict[str, Any] = {}  # the running round's job
        self._ready: Any = None  # its model, saved before the held-out check: (name, result)
        self._auto_name = ""

        self.form = FinetuneForm(ModelCombo(self.session.store, available_only=True,
                                            preferred=self._base_candidates))
        for attr in ("model_combo", "steps_spin", "lr_spin", "learn_from_combo", "heldout_check",
                     "classes_edit"):
            setattr(self, attr, getattr(self.form, attr))
        self.name_edit = self.form.name_edit
        self._strokes: StrokeTracker | None = None
        self._strokes_layer: Any = None
        self.review.labels_changed.connect(self._track_strokes)
        self._track_strokes()
        self.finetune_button = QPushButton("Fine-tune")
        self.cancel_button = QPushButton("Cancel", enabled=False)
        self.progress_bar = QProgressBar()
        self.status_label = QLabel("Ready.")
        self.status_label.setWordWrap(True)
        self.loss_plot = LossPlot()
        self.result_label = QLabel()
        self.result_label.setTextFormat(Qt.TextFormat.RichText)
        self.result_label.setWordWrap(True)
        self.resegment_button = QPushButton("Re-segment unreviewed slices", enabled=False)
        self.job = BackgroundJob(
            self, FinetuneError, self.status_label, set_busy=self._set_busy,
            on_progress=self._on_progress, on_cancelled=self._on_cancelled,
            describe_error=lambda exc: f"Fine-tuning failed: {str(exc) or 'no result came back'}")

        self._build_layout()

        self.finetune_button.clicked.connect(lambda: self.finetune())
        self.cancel_button.clicked.connect(self.cancel)
        self.resegment_button.clicked.connect(lambda: self.resegment_unreviewed())
        self.review.labels_changed.connect(self._select_base_model)
        self.review.layers_chosen.connect(self._propose_name)
        self.review.refreshed.connect(self.form.show_estimate)
        self._propose_name()
        self.refresh_models()
        self.fit_width()

    def _build_layout(self) -> None:
        """The review part, then the form, buttons, progress and results, all in one scroll."""
        run_buttons = QHBoxLayout()
        run_buttons.addWidget(self.finetune_button)
        run_buttons.addWidget(self.cancel_button)
        # everything scrolls, so no button is pushed off a 1000-pixel-high screen
        content = QWidget()
        scroll = QScrollArea(widgetResizable=True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        scroll.setWidget(content)
        self._scroll, self._content = scroll, content
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self._layout = QVBoxLayout(content)
        self._layout.addWidget(self.review)
        self._layout.addWidget(self.form)
        self._layout.addLayout(run_buttons)
        for widget in (self.progress_bar, self.status_label, self.loss_plot, self.result_label,
                       self.resegment_button):
            self._layout.addWidget(widget)
        self._layout.addStretch(1)

    def fit_width(self) -> None:
        """Make the dock as wide as the content needs (call once all rows are added)."""
        bar = self._scroll.verticalScrollBar().sizeHint().width()
        margins = self._layout.contentsMargins()
        self._scroll.setMinimumWidth(self._content.sizeHint().width() + bar + margins.left()
                                     + margins.right() + 16)

    # ------------------------------------------------------------------------ models
    def _propose_name(self) -> None:
        """Propose a free model name, unless the user typed their own."""
        from napari_fcnseg.core.store import ModelError

        if self.name_edit.text() not in ("", self._auto_name):
            return
        image, store = self.image_layer, self.session.store
        try:
            self._auto_name = store.unique_name(f"{image.name}-ft" if image else "ft")
        except ModelError:  # an image name with no usable character
            self._auto_name = store.unique_name("finetuned")
        self.name_edit.setText(self._auto_name)

    def refresh_models(self) -> None:
        """Re-list the stored models usable as a starting point (the base model combo's own)."""
        self.model_combo.refresh()

    def _base_candidates(self) -> list[str]:
        """The model that made the labels under review, then the session's model."""
        state = self.review_state()
        return [state.model if state else "", self.session.model]

    def _select_base_model(self) -> None:
        """Pick the model that made the labels, else the session's model, else the default."""
        self.model_combo.choose([*self._base_candidates(), self.model_combo.default_model()])

    # ------------------------------------------------------------------------ fine-tuning
    @property
    def busy(self) -> bool:
        """True while fine-tuning runs."""
        return self.job.busy

    def _prepare(self) -> dict[str, Any]:
        """Check the request and gather everything the worker needs; raise FinetuneError."""
        strokes = (self._strokes if self.learn_from_combo.currentText() == STROKES_ONLY
                   else None)
        return prepare_round(
            self.session.store, self.image_layer, self.labels_layer, self.training_slices(),
            self.review_state(), base=self.model_combo.currentText(),
            any_models=self.model_combo.count() > 0, name=self.name_edit.text(),
            classes_text=self.classes_edit.text(), settings=self.form.settings(),
            strokes=strokes)

    def refresh(self) -> None:
        """Re-list the slices to learn from, and say how long fine-tuning on them will take."""
        self.review.refresh()  # the estimate follows through review.refreshed

    def _name_classes(self, names: list[str]) -> None:
        """Record the round's class names on the labels layer (status bar, legend, saving)."""
        from napari_fcnseg.class_style import style_labels_layer

        labels = self.labels_layer
        state = self.review_state(create=True)
        if labels is None or state.classes == names:
            return
        state.classes = list(names)
        labels.metadata[METADATA_KEY] = state.to_metadata()
        style_labels_layer(labels, list(names))

    def _track_strokes(self) -> None:
        """Follow the painting on the Labels layer under review (see :mod:`._strokes`)."""
        if self._strokes is not None and self._strokes_layer is not None:
            self._strokes_layer.events.paint.disconnect(self._strokes.on_paint)
        labels = self.labels_layer
        self._strokes_layer = labels
        self._strokes = None
        if labels is not None:
            self._strokes = StrokeTracker(tuple(labels.data.shape))
            labels.events.paint.connect(self._strokes.on_paint)

    def finetune(self) -> concurrent.futures.Future:
        """Fine-tune the base model on the edited and reviewed slices in the background.

        Returns
        -------
        concurrent.futures.Future
            Resolves to the saved model's name; holds :class:`FinetuneError` when the request
            was refused or training failed, and :class:`FinetuneCancelled` after :meth:`cancel`.
            Problems are also shown as notifications; the labels are never changed.
        """
        from napari_fcnseg.core.finetune import total_steps

        if self.busy:
            return self.job.refuse("Fine-tuning is already running; wait or cancel it.")
        try:
            job = self._prepare()
        except FinetuneError as exc:
            return self.job.refuse(str(exc))
        self._name_classes(job["class_names"])
        total = total_steps(job["settings"], len(job["slices"]))
        self._round, self._ready = job, None
        self._t_first = None
        self.loss_plot.clear()
        self.loss_plot.set_total(job["settings"].steps)
        self.result_label.clear()
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(0)
        keys = ("slices", "class_names", "settings", "modality", "ignore_label")
        future = self.job.start(
            finetune_work, self.session.store, job["base"], job["image"], job["labels"],
            **{k: job[k] for k in keys}, total=total, desc=f"Fine-tuning {job['name']}",
            on_returned=lambda result: self._on_returned(result, job))
        self.status_label.setText(f"Fine-tuning '{job['base']}' on {len(job['slices'])} "
                                  "slice(s)...")
        return future

    def cancel(self) -> None:
        """Stop fine-tuning after the current step; the labels are untouched.

        Before the model is trained nothing is saved; during its held-out check the saved
        model is kept, without an estimate. Once the outcome is being saved it is too late,
        and nothing happens.
        """
        self.job.cancel()

    def _set_busy(self, busy: bool) -> None:
        self.finetune_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        usable = not busy or self._ready is not None  # the model came before its check
        self.resegment_button.setEnabled(usable and self._last_model is not None)

    def _on_progress(self, record: Progress) -> None:
        if record.result is not None:
            self._model_ready(record.result)
            return
        if record.loss is None:
            self.status_label.setText(record.message.capitalize() + "...")
            return
        now = time.monotonic()
        if self._t_first is None or record.step <= 1:
            self._t_first, eta = now, "estimating time left"
        else:
            per_step = (now - self._t_first) / (record.step - 1)
            self.form.seconds_per_step = per_step  # for the next round's estimate
            eta = f"about {format_duration(per_step * (record.total - record.step))} left"
        self.progress_bar.setRange(0, max(1, record.total))
        self.progress_bar.setValue(record.step)
        if record.message.startswith("held-out"):  # a fold: not the saved model's curve
            self.status_label.setText(f"Measuring on held-out slices ({record.message}), {eta}.")
            return
        self.loss_plot.add_point(record.step, record.loss, record.dice)
        self.status_label.setText(f"Step {record.step} of {record.total}, {eta}.")

    def _model_ready(self, result: Any) -> None:
        """Save and select the trained model while its held-out check runs (main thread)."""
        from napari_fcnseg.core.store import ModelError

        try:
            saved = save_result(self.session.store, result, self._round)
        except (ModelError, OSError):
            return  # saved (or the failure reported) when the round ends
        self._ready = (saved, result)
        models_changed.emit()
        self._last_model = saved
        self.session.select_model(saved)
        self._set_busy(True)
        self.status_label.setText(
            f"Saved '{saved}' and selected it for segmenting; now measuring it on held-out "
            "slices (you may re-segment meanwhile; the verdict follows)...")

    def _on_returned(self, result: Any, job: dict[str, Any]) -> None:
        """Save the fine-tuned model (main thread); the future resolves when the worker ends."""
        from napari_fcnseg.core.store import ModelError

        if self.job.cancelled:
            return
        try:
            if self._ready is None:
                saved = save_result(self.session.store, result, job)
            else:  # saved before the check: its card gets what the check found
                saved = self._ready[0]
                if not update_card(self.session.store, result, job, saved):
                    notify_info(f"'{saved}' was renamed or deleted during its held-out check; "
                                "its card was not updated.")
        except (ModelError, OSError) as exc:
            self.job.reject(f"Fine-tuning failed: the model could not be saved: {exc}")
            return
        self.job.resolve(saved)
        models_changed.emit()
        # a model that is not better on held-out slices is kept, but not used for segmenting
        self._last_model = job["base"] if result.improved is False else saved
        self.session.select_model(self._last_model)  # the Segment widget follows
        if result.stopped:
            notify_info(f"Fine-tuning stopped early: {result.stopped}.")
        message = verdict(result, job["base"], saved)
        if result.improved is False:
            notify_info(message)
        if is_alive(self):
            self.result_label.setText(dice_table(result))
            self.status_label.setText(message)
            self.name_edit.clear()
            self._propose_name()  # a fresh name for the next round

    def _on_cancelled(self, future: concurrent.futures.Future) -> None:
        if self._ready is not None:  # the model is saved; only its check was cancelled
            message = keep_unchecked(self.session.store, self._ready, self._round)
            future.set_result(self._ready[0])
            notify_info(message)
            if is_alive(self):
                self.status_label.setText(message)
            return
        future.set_exception(FinetuneCancelled(CANCELLED_MESSAGE))
        notify_info(CANCELLED_MESSAGE + ".")
        if is_alive(self):
            self.status_label.setText(CANCELLED_MESSAGE + ".")
            self.progress_bar.setValue(0)

    # ------------------------------------------------------------------------ re-segment
    def resegment_unreviewed(self) -> concurrent.futures.Future:
        """Re-segment every slice that is neither edited nor reviewed with the new model.

        Returns
        -------
        concurrent.futures.Future
            The Segment widget's future (resolves to the slices written), or one holding
            :class:`FinetuneError` when re-segmenting is not possible.
        """
        return resegment_unreviewed(self, self._last_model or self.model_combo.currentText())
