"""A combo box of the store's models that lists them anew whenever the store changes.

Segment and Review and Fine-tune both choose a model from the store; :class:`ModelCombo` is
the one place that lists the models, names their classes in a tooltip, keeps the choice across
store changes (:data:`.session.models_changed`) and falls back when the chosen model is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from qtpy.QtCore import QSignalBlocker, Qt, Signal
from qtpy.QtWidgets import QComboBox

from ._common import notify_error
from .session import follow_models

if TYPE_CHECKING:
    from napari_fcnseg.core.store import ModelInfo, ModelStore


def _tooltip(info: ModelInfo) -> str:
    classes = ", ".join(info.metadata.get("classes", [])) or "unknown classes"
    note = "" if info.available else " (weights missing)"
    return f"{info.name}: {classes}{note}"


class ModelCombo(QComboBox):
    """The models of ``store``, listed again after every change of the store.

    Re-listing keeps the chosen model; when it is gone, the first of ``preferred()`` that is
    listed is chosen, else the store's default. ``currentTextChanged`` is emitted once after
    re-listing when the choice changed, never for the intermediate states.

    Parameters
    ----------
    store : ModelStore
        The store to list (the viewer session's, see :attr:`.session.ViewerSession.store`).
    available_only : bool
        List only models whose weights are present (a starting point must load).
    preferred : callable, optional
        Returns the names to fall back on, best first, before the store's default.
    """

    #: Emitted after the store changed, before the models are listed anew.
    store_changed = Signal()

    def __init__(self, store: ModelStore, *, available_only: bool = False,
                 preferred: Callable[[], Iterable[str]] = tuple) -> None:
        super().__init__()
        self.store = store
        self.available_only = available_only
        self._preferred = preferred
        follow_models(self._on_models_changed)

    def _on_models_changed(self) -> None:
        self.store_changed.emit()
        self.refresh()

    def default_model(self) -> str:
        """The store's default model, or "" when the store cannot say."""
        from napari_fcnseg.core.store import ModelError

        try:
            return self.store.default()
        except (ModelError, OSError):
            return ""

    def refresh(self) -> bool:
        """List the stored models again; False (with a notification) if the store is unreadable."""
        from napari_fcnseg.core.store import ModelError

        current = self.currentText()
        try:
            infos = [info for info in self.store.list()
                     if info.available or not self.available_only]
        except (ModelError, OSError) as exc:
            notify_error(f"Cannot read the model store: {exc}")
            return False
        with QSignalBlocker(self):
            self.clear()
            for i, info in enumerate(infos):
                self.addItem(info.name)
                self.setItemData(i, _tooltip(info), Qt.ItemDataRole.ToolTipRole)
            self.choose([current, *self._preferred(), self.default_model()])
        if self.currentText() != current:
            self.currentTextChanged.emit(self.currentText())
        return True

    def choose(self, names: Iterable[str]) -> bool:
        """Choose the first of ``names`` that is listed; False (choice unchanged) if none is."""
        for name in names:
            if name and self.findText(name) >= 0:
                self.setCurrentText(name)
                return True
        return False
