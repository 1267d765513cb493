"""The "CT window" dock widget: one click sets a CT display window on the selected image.

Windows are given as level (centre) and width in Hounsfield units, the way radiologists name
them; the layer's contrast limits become ``level -/+ width / 2``. Only the display changes,
never the data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import QGridLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ._common import notify_error

if TYPE_CHECKING:
    import napari

# name: (level, width) in HU
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "Soft tissue": (40.0, 400.0),
    "Lung": (-600.0, 1500.0),
    "Bone": (400.0, 1800.0),
    "Brain": (40.0, 80.0),
    "Liver": (60.0, 160.0),
    "Mediastinum": (50.0, 350.0),
}


def window_limits(level: float, width: float) -> tuple[float, float]:
    """Return the contrast limits ``(level - width / 2, level + width / 2)``."""
    return level - width / 2.0, level + width / 2.0


class WindowWidget(QWidget):
    """Buttons that apply CT window presets to the selected image layer.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer this widget is docked in.
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.buttons: dict[str, QPushButton] = {}
        grid = QGridLayout()
        for i, (name, (level, width)) in enumerate(WINDOW_PRESETS.items()):
            button = QPushButton(name)
            button.setToolTip(f"Level {level:g} HU, width {width:g} HU")
            button.clicked.connect(lambda _=False, n=name: self.apply(n))
            grid.addWidget(button, i // 3, i % 3)
            self.buttons[name] = button
        self.status = QLabel("Select a CT image layer, then pick a window.")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addWidget(self.status)
        layout.addStretch(1)

    def apply(self, preset: str) -> bool:
        """Set the window ``preset`` on the selected image layer; False if there is none."""
        from napari.layers import Image

        layer = self.viewer.layers.selection.active
        if not isinstance(layer, Image):
            images = [lyr for lyr in self.viewer.layers if isinstance(lyr, Image)]
            layer = images[-1] if len(images) == 1 else None
        if layer is None or layer.rgb:
            notify_error("Select the grayscale image layer to window first.")
            return False
        level, width = WINDOW_PRESETS[preset]
        low, high = window_limits(level, width)
        layer.contrast_limits_range = (min(low, layer.contrast_limits_range[0]),
                                       max(high, layer.contrast_limits_range[1]))
        layer.contrast_limits = (low, high)
        self.status.setText(f"'{layer.name}': {preset} window (L {level:g} / W {width:g} HU).")
        return True
