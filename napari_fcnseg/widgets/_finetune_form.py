"""The settings of a fine-tuning round, in plain words, with a time estimate before it starts.

Every control has a tooltip a clinician can act on. The estimate multiplies the steps to run
(the final model's, plus the held-out folds') by the seconds a step took in this session's
last round, or, before any round, by a rough figure for a 2-core laptop CPU; it says which.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)

if TYPE_CHECKING:
    from ._model_combo import ModelCombo

WHOLE_SLICES = "Whole edited/reviewed slices"
STROKES_ONLY = "Only my strokes"
#: Seconds per step of 4 crops of 192 x 192 on a 2-core laptop CPU (BENCHMARKS.md).
PRIOR_SECONDS_PER_STEP = 0.2


def parse_class_names(text: str) -> list[str] | None:
    """Comma-separated class names, background first; None when the field is empty.

    Raises
    ------
    ValueError
        When a name is empty or repeated, or fewer than two are given.
    """
    if not text.strip():
        return None
    names = [n.strip() for n in text.split(",")]
    if len(names) < 2 or any(not n for n in names):
        raise ValueError("give at least two comma-separated class names, background first "
                         "(e.g. background, liver, tumour)")
    if len({n.casefold() for n in names}) != len(names):
        raise ValueError("each class name may be used once")
    return names


class FinetuneForm(QWidget):
    """Base model, steps, learning rate, what to learn from, held-out check, class names, name.

    Parameters
    ----------
    model_combo : ModelCombo
        The choice of base model (it lists the store's models by itself).
    """

    def __init__(self, model_combo: ModelCombo) -> None:
        super().__init__()
        from napari_fcnseg.core.finetune import FinetuneSettings

        defaults = FinetuneSettings()
        self.seconds_per_step: float | None = None  # measured in this session's last round
        self.model_combo = model_combo
        self.model_combo.setToolTip("The model to start from; it is never changed: the result "
                                    "is saved as a new model.")
        self.steps_spin = QSpinBox(minimum=0, maximum=100_000, value=defaults.steps or 0)
        self.steps_spin.setSpecialValueText("auto")  # 0 = chosen by the task (core.finetune)
        self.steps_spin.setToolTip(
            "How many training passes over the annotated slices. 'auto': more when your "
            "labels add classes the model does not know (it learns them from scratch), fewer "
            "when you correct its own classes. More steps fit the slices more closely, take "
            "longer, and past a point only memorise them.")
        self.lr_spin = QDoubleSpinBox(decimals=5, minimum=0.0, maximum=0.1, singleStep=1e-4,
                                      value=defaults.lr or 0.0)
        self.lr_spin.setSpecialValueText("auto")  # 0 = chosen by the task (core.finetune)
        self.lr_spin.setToolTip(
            "How big each training step is. 'auto': larger when your labels add classes the "
            "model does not know, smaller when you correct its own classes. Set a value only "
            "if training is unstable (lower it) or learns nothing (raise it a little).")
        self.learn_from_combo = QComboBox()
        self.learn_from_combo.addItems([WHOLE_SLICES, STROKES_ONLY])
        self.learn_from_combo.setToolTip(
            "Whole slices: every pixel of an edited or reviewed slice is taken as correct. "
            "Only my strokes: on edited slices only the pixels you painted or erased count "
            "(the rest may still be wrong); slices you marked reviewed count whole.")
        self.heldout_check = QCheckBox("Measure on held-out slices")
        self.heldout_check.setChecked(defaults.holdout_folds >= 2)
        self.heldout_check.setToolTip(
            "With two or more annotated slices, also train the same way without each slice in "
            "turn and score it on that slice: an honest estimate of how the new model does on "
            "slices it has not seen. Takes up to four times as long. A model that is not "
            "better than the starting one is saved but not selected for segmenting.")
        self.classes_edit = QLineEdit()
        self.classes_edit.setPlaceholderText("background, organ, lesion")
        self.classes_edit.setToolTip(
            "Your class names, background first, comma-separated: label value 1 is the second "
            "name, and so on. Add names to teach the model new classes; rename to relabel. "
            "Empty: the names the labels layer already has.")
        self.name_edit = QLineEdit()
        self.name_edit.setToolTip("Name of the new model in the store.")
        self.estimate_label = QLabel()
        self.estimate_label.setWordWrap(True)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Base model", self.model_combo)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Learning rate", self.lr_spin)
        form.addRow("Learn from", self.learn_from_combo)
        form.addRow("", self.heldout_check)
        form.addRow("Classes", self.classes_edit)
        form.addRow("New model name", self.name_edit)
        form.addRow("", self.estimate_label)
        self._n_slices = 0
        for signal in (self.steps_spin.valueChanged, self.heldout_check.toggled):
            signal.connect(lambda *_: self.show_estimate(self._n_slices))

    def settings(self):
        """The :class:`~napari_fcnseg.core.finetune.FinetuneSettings` the controls describe."""
        from napari_fcnseg.core.finetune import FinetuneSettings

        folds = FinetuneSettings.holdout_folds if self.heldout_check.isChecked() else 0
        return FinetuneSettings(steps=self.steps_spin.value() or None,
                                lr=self.lr_spin.value() or None, holdout_folds=folds)

    def show_estimate(self, n_slices: int) -> None:
        """Show how long a round on ``n_slices`` annotated slices will take, roughly."""
        self._n_slices = n_slices
        if n_slices < 1:
            self.estimate_label.setText("")
            return
        from napari_fcnseg.core.finetune import total_steps

        per_step = self.seconds_per_step or PRIOR_SECONDS_PER_STEP
        settings = self.settings()
        seconds = per_step * total_steps(settings, n_slices)
        basis = ("from this session's last round" if self.seconds_per_step else
                 "a rough figure for a 2-core laptop; the first round measures it")
        text = f"Takes about {format_duration(seconds)} on {n_slices} slice(s)"
        if settings.steps is None:  # 'auto': longer when the labels add classes
            longer = per_step * total_steps(settings, n_slices, learns_new_classes=True)
            text += f", about {format_duration(longer)} when your labels add new classes"
        self.estimate_label.setText(f"{text} ({basis}).")


def format_duration(seconds: float) -> str:
    """``seconds``, rounded, as 'N s' or 'M min SS s'."""
    seconds = max(0, round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
