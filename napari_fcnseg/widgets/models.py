"""The "Models" dock widget: list, rename, delete, export, import and choose stored models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGridLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_fcnseg.core.model_card import annotated_slice_count as _slices
from napari_fcnseg.core.model_card import describe_card as describe
from napari_fcnseg.core.model_card import dice_text as _dice

from ._common import is_alive, notify_error, notify_info
from .session import follow_models, models_changed, session_for

if TYPE_CHECKING:
    import napari

    from napari_fcnseg.core.store import ModelStore

COLUMNS = ("Name", "Parent", "Slices", "Held-out Dice")
MODEL_FILTER = "napari-fcnseg model (*.pt);;All files (*)"
NAME_ROLE = Qt.ItemDataRole.UserRole


class ModelsWidget(QWidget):
    """Manage the models in the store.

    The dialogs are attributes so they can be replaced (for example in tests):
    ``confirm(question) -> bool``, ``ask_name(title, current) -> str | None``,
    ``ask_save_path(suggested) -> str | None`` and ``ask_open_path() -> str | None``.

    Parameters
    ----------
    napari_viewer : napari.Viewer, optional
        The viewer this widget is docked in; its session's store is the one managed. Without
        one, a store in the default folder is.
    """

    def __init__(self, napari_viewer: napari.Viewer | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.store: ModelStore
        if napari_viewer is not None:
            self.store = session_for(napari_viewer).store
        else:
            from napari_fcnseg.core.store import ModelStore

            self.store = ModelStore()
        self.confirm: Callable[[str], bool] = self._confirm_dialog
        self.ask_name: Callable[[str, str], str | None] = self._name_dialog
        self.ask_save_path: Callable[[str], str | None] = self._save_dialog
        self.ask_open_path: Callable[[], str | None] = self._open_dialog

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.buttons: dict[str, QPushButton] = {}
        grid = QGridLayout()
        actions = [("Rename...", self._on_rename), ("Delete", self._on_delete),
                   ("Export...", self._on_export), ("Import...", self._on_import),
                   ("Set as default", self._on_set_default), ("Reset to bundled", self.reset)]
        for i, (text, slot) in enumerate(actions):
            button = QPushButton(text)
            button.clicked.connect(lambda _=False, s=slot: s())
            grid.addWidget(button, i // 2, i % 2)
            self.buttons[text] = button
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(self.details)
        layout.addLayout(grid)

        self.table.itemSelectionChanged.connect(self._on_selection)
        follow_models(self.refresh)
        self.refresh()

    # --------------------------------------------------------------------------- listing
    def refresh(self) -> None:
        """Re-read the store and redraw the table, keeping the selected model."""
        from napari_fcnseg.core.store import ModelError

        keep = self.selected_name()
        try:
            infos, default = self.store.list(), self.store.default()
        except (ModelError, OSError) as exc:
            notify_error(f"Cannot read the model store: {exc}")
            return
        self._infos = {info.name: info for info in infos}
        self.table.setRowCount(len(infos))
        for row, info in enumerate(infos):
            meta = info.metadata
            name = info.name + (" (default)" if info.name == default else "")
            if not info.available:
                name += " (weights missing)"
            before = _dice(meta.get("dice_before")).split(" (")[0]
            after = _dice(meta.get("dice_after")).split(" (")[0]
            dice = f"{before or '?'} → {after}" if after else ""
            if dice and meta.get("improved") is False:
                dice += " (not better)"
            cells = (name, meta.get("parent") or "", _slices(meta), dice)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(str(text))
                item.setData(NAME_ROLE, info.name)
                item.setToolTip(describe(meta))
                self.table.setItem(row, col, item)
        names = [info.name for info in infos]
        self.select(keep if keep in names else default)

    def names(self) -> list[str]:
        """Store names in table order."""
        return [self.table.item(r, 0).data(NAME_ROLE) for r in range(self.table.rowCount())]

    def selected_name(self) -> str | None:
        """Store name of the selected model, or None."""
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        return self.table.item(rows[0].row(), 0).data(NAME_ROLE)

    def select(self, name: str) -> None:
        """Select the row of model ``name`` (nothing happens when it is not listed)."""
        if name in self.names():
            self.table.selectRow(self.names().index(name))

    def _on_selection(self) -> None:
        name = self.selected_name()
        info = getattr(self, "_infos", {}).get(name)
        self.details.setText("" if info is None else f"{name}\n{describe(info.metadata)}")
        user_model = info is not None and not info.bundled
        for text in ("Rename...", "Delete", "Export..."):
            self.buttons[text].setEnabled(user_model or text == "Export...")

    # --------------------------------------------------------------------------- actions
    def _apply(self, action: Callable[[], Any], done: Callable[[Any], str]) -> Any:
        """Run a store action; on success notify ``done(result)``, tell every widget.

        Returns the action's result, or None when it failed (with an error notification).
        """
        from napari_fcnseg.core.store import ModelError

        try:
            result = action()
        except (ModelError, OSError) as exc:
            notify_error(str(exc))
            return None
        notify_info(done(result))
        models_changed.emit()
        if is_alive(self):
            self.refresh()
        return True if result is None else result

    def rename(self, old: str, new: str) -> bool:
        """Rename user model ``old`` to ``new`` (cleaned up by the store)."""
        info = self._apply(lambda: self.store.rename(old, new),
                           lambda i: f"Renamed model '{old}' to '{i.name}'.")
        if info is not None:
            self.select(info.name)
        return info is not None

    def delete(self, name: str) -> bool:
        """Delete user model ``name`` after :attr:`confirm` agrees."""
        if not self.confirm(f"Delete model '{name}'? This cannot be undone."):
            return False
        return self._apply(lambda: self.store.delete(name),
                           lambda _: f"Deleted model '{name}'.") is not None

    def export(self, name: str, path: str | Path) -> bool:
        """Write model ``name`` to the file (or folder) ``path``."""
        from napari_fcnseg.core.store import ModelError

        try:
            dest = self.store.export(name, path)
        except (ModelError, OSError) as exc:
            notify_error(str(exc))
            return False
        notify_info(f"Exported model '{name}' to {dest}.")
        return True

    def import_model(self, path: str | Path, name: str | None = None) -> bool:
        """Import an exported model file into the store."""
        info = self._apply(lambda: self.store.import_model(path, name),
                           lambda i: f"Imported model '{i.name}' from {Path(path).name}.")
        if info is not None:
            self.select(info.name)
        return info is not None

    def set_default(self, name: str) -> bool:
        """Make ``name`` the model new segmentations start with."""
        return self._apply(lambda: self.store.set_default(name),
                           lambda _: f"'{name}' is now the default model.") is not None

    def reset(self) -> bool:
        """Make the bundled model the default again (user models are kept)."""
        return self._apply(lambda: self.store.reset(),
                           lambda _: "The bundled model is the default again.") is not None

    # -------------------------------------------------------------------- button handlers
    def _need_selection(self) -> str | None:
        name = self.selected_name()
        if name is None:
            notify_error("Select a model in the table first.")
        return name

    def _on_rename(self) -> None:
        name = self._need_selection()
        if name is not None:
            new = self.ask_name(f"New name for '{name}'", name)
            if new and new != name:
                self.rename(name, new)

    def _on_delete(self) -> None:
        name = self._need_selection()
        if name is not None:
            self.delete(name)

    def _on_export(self) -> None:
        name = self._need_selection()
        if name is not None:
            path = self.ask_save_path(f"{name}.pt")
            if path:
                self.export(name, path)

    def _on_import(self) -> None:
        path = self.ask_open_path()
        if path:
            self.import_model(path)

    def _on_set_default(self) -> None:
        name = self._need_selection()
        if name is not None:
            self.set_default(name)

    # --------------------------------------------------------------------------- dialogs
    def _confirm_dialog(self, question: str) -> bool:
        answer = QMessageBox.question(self, "napari-fcnseg", question)
        return answer == QMessageBox.StandardButton.Yes

    def _name_dialog(self, title: str, current: str) -> str | None:
        text, ok = QInputDialog.getText(self, "Rename model", title, text=current)
        return text.strip() if ok else None

    def _save_dialog(self, suggested: str) -> str | None:
        path, _ = QFileDialog.getSaveFileName(self, "Export model", suggested, MODEL_FILTER)
        return path or None

    def _open_dialog(self) -> str | None:
        path, _ = QFileDialog.getOpenFileName(self, "Import model", "", MODEL_FILTER)
        return path or None
