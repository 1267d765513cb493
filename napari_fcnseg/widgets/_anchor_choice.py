"""The Segment widget's "Keep objects" choice.

Every predicted object, or only those that touch the slices a person edited or reviewed
(:mod:`napari_fcnseg.core.objects`), for one class or all.
"""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox

EVERY_OBJECT = "every object"
ALL_CLASSES = "touching reviewed slices: every class"
ONE_CLASS = "touching reviewed slices: {}"


class AnchorChoice(QComboBox):
    """Which classes keep only the objects that touch reviewed (or edited) slices."""

    def __init__(self) -> None:
        super().__init__()
        self._names: list[str] = []
        self.addItem(EVERY_OBJECT)
        self.setToolTip(
            "Every object: keep all the model finds. Touching reviewed slices: keep only the "
            "objects that connect, in 3D, to the same class on slices you painted or reviewed "
            "(e.g. the one tumour you corrected); spots elsewhere become background. Not for "
            "structures with several separate objects, such as vertebrae or metastases.")

    def set_classes(self, names: list[str]) -> None:
        """Offer the foreground classes of ``names`` (background first), keeping the choice."""
        if names == self._names:
            return
        current = self.currentText()
        self._names = list(names)
        self.blockSignals(True)
        self.clear()
        self.addItem(EVERY_OBJECT)
        if len(names) > 1:
            self.addItem(ALL_CLASSES)
            self.addItems([ONE_CLASS.format(n) for n in names[1:]])
        index = self.findText(current)
        self.setCurrentIndex(max(0, index))
        self.blockSignals(False)

    def choose_class(self, name: str | None) -> None:
        """Select one class by name, every class (``"*"``) or every object (None)."""
        text = EVERY_OBJECT if name is None else ALL_CLASSES if name == "*" else (
            ONE_CLASS.format(name))
        index = self.findText(text)
        if index < 0:
            raise ValueError(f"'{name}' is not a class of the chosen model")
        self.setCurrentIndex(index)

    def classes(self) -> list[int]:
        """Label values whose objects must touch reviewed slices; empty for every object."""
        text = self.currentText()
        if text == ALL_CLASSES:
            return list(range(1, len(self._names)))
        for value, name in enumerate(self._names[1:], start=1):
            if text == ONE_CLASS.format(name):
                return [value]
        return []
