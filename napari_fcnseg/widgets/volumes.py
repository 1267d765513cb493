"""The "Volumes" dock widget: volume in mL, voxels and parts of every class of a labels layer.

The figures follow the person's edits: a short moment after painting stops they are counted
again in a thread worker, so the viewer never waits on a large volume. Volumes come from the
layer's scale, taken as millimetres per voxel (how the plugin opens scans); parts are connected
components (face and edge neighbours), e.g. the number of separate lesions.
"""

from __future__ import annotations

import csv
import io as text_io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_fcnseg.core.review import METADATA_KEY

from ._common import is_alive, layer_named, notify_error, notify_info
from .session import real_viewer

if TYPE_CHECKING:
    import napari

COLUMNS = ("Class", "Voxels", "Volume (mL)", "Parts")
WATCHED_EVENTS = ("paint", "data")


def _class_names(layer: Any) -> list[str] | None:
    features = getattr(layer, "features", None)
    if features is not None and "class" in getattr(features, "columns", ()):
        return [str(c) for c in features["class"]]
    return None


class VolumesWidget(QWidget):
    """Per-class volume table of a labels layer, kept current, exportable as CSV.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer this widget is docked in (or napari's proxy of it).
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = real_viewer(napari_viewer)
        self.rows: list[dict] = []
        self._watched: Any = None
        self._pending = False
        self._worker: Any = None
        self.labels_combo = QComboBox()
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setToolTip("Volume from the layer's voxel size in mm; parts are connected "
                              "pieces (e.g. separate lesions).")
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.export_button = QPushButton("Export CSV...")
        self._timer = QTimer(self, singleShot=True, interval=400)
        self._timer.timeout.connect(self.recount)
        form = QFormLayout()
        form.addRow("Labels", self.labels_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.table)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)
        self._user_choice = ""  # a layer the person picked in the combo box (not automatic)
        self.labels_combo.activated.connect(
            lambda _i: setattr(self, "_user_choice", self.labels_combo.currentText()))
        self.labels_combo.currentTextChanged.connect(self._on_labels_picked)
        self.export_button.clicked.connect(self._on_export_clicked)
        for event in ("inserted", "removed", "reordered"):
            getattr(self.viewer.layers.events, event).connect(self._refresh_layers)
        self._refresh_layers()

    @property
    def labels_layer(self) -> Any:
        """The labels layer counted, or None."""
        from napari.layers import Labels

        layer = layer_named(self.viewer, self.labels_combo.currentText())
        return layer if isinstance(layer, Labels) else None

    def _refresh_layers(self, event: Any = None) -> None:
        from napari.layers import Labels

        if not is_alive(self):
            return
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Labels)]
        current = self.labels_combo.currentText()
        ours = [layer.name for layer in self.viewer.layers
                if isinstance(layer, Labels) and METADATA_KEY in layer.metadata]
        self.labels_combo.blockSignals(True)
        self.labels_combo.clear()
        self.labels_combo.addItems(names)
        # the person's pick stays; otherwise a layer the plugin wrote wins (not a ground truth)
        if self._user_choice in names:
            choice = self._user_choice
        elif ours:
            choice = current if current in ours else ours[-1]
        else:
            choice = current if current in names else (names[-1] if names else "")
        self.labels_combo.setCurrentText(choice)
        self.labels_combo.blockSignals(False)
        self._on_labels_picked()

    def _on_labels_picked(self, name: str = "") -> None:
        layer = self.labels_layer
        if layer is not self._watched:
            for event in WATCHED_EVENTS if self._watched is not None else ():
                getattr(self._watched.events, event).disconnect(self._schedule)
            self._watched = layer
            for event in WATCHED_EVENTS if layer is not None else ():
                getattr(layer.events, event).connect(self._schedule)
        self.recount()

    def _schedule(self, event: Any = None) -> None:
        if is_alive(self):
            self._timer.start()

    def recount(self) -> None:
        """Count the chosen layer again in a thread worker (at most one at a time)."""
        from napari.qt.threading import create_worker

        from napari_fcnseg.core.metrics import class_volumes

        layer = self.labels_layer
        if layer is None:
            self._show([], "Choose or create a labels layer.")
            return
        if self._worker is not None:
            self._pending = True  # count again when the running count ends
            return
        data = layer.data  # a zarr-backed layer is counted slice by slice, not loaded whole
        if np.dtype(data.dtype).kind not in "iub" or data.ndim < 2:
            self._show([], f"'{layer.name}' holds no integer labels.")
            return
        scale = tuple(float(s) for s in layer.scale)
        worker = create_worker(class_volumes, data, scale, _class_names(layer),
                               _ignore_errors=True)
        worker.returned.connect(lambda rows: self._show(rows, f"'{layer.name}': "
                                                        f"{len(rows)} class(es)."))
        worker.errored.connect(lambda exc: self._show([], f"Could not count: {exc}"))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.status_label.setText("Counting...")
        worker.start()

    def _on_finished(self) -> None:
        self._worker = None
        if self._pending and is_alive(self):
            self._pending = False
            self.recount()

    def _show(self, rows: list[dict], message: str) -> None:
        if not is_alive(self):
            return
        self.rows = rows
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            ml = "" if row["ml"] is None else f"{row['ml']:.2f}"
            parts = "not counted" if row["components"] is None else str(row["components"])
            for j, text in enumerate((row["name"], str(row["voxels"]), ml, parts)):
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.status_label.setText(message)

    def to_csv(self) -> str:
        """The table as CSV text (class, value, voxels, volume_ml, parts)."""
        out = text_io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["class", "value", "voxels", "volume_ml", "parts"])
        for row in self.rows:
            writer.writerow([row["name"], row["value"], row["voxels"],
                             "" if row["ml"] is None else row["ml"],
                             "" if row["components"] is None else row["components"]])
        return out.getvalue()

    def export_csv(self, path: str | Path) -> Path:
        """Write the table to ``path`` atomically; never over an existing non-regular file."""
        from napari_fcnseg.io import atomic_write

        text = self.to_csv()
        return atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, "utf-8"))

    def _on_export_clicked(self) -> None:
        from napari_fcnseg.io import ImageWriteError

        path, _ = QFileDialog.getSaveFileName(self, "Export volumes", "volumes.csv",
                                              "CSV (*.csv)")
        if not path:
            return
        try:
            written = self.export_csv(path)
        except ImageWriteError as exc:
            notify_error(str(exc))
        else:
            notify_info(f"Wrote {written}.")
