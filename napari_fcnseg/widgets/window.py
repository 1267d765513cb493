"""The "CT window" dock widget: one click sets a CT display window on the selected image.

Windows are given as level (centre) and width in Hounsfield units, the way radiologists name
them; the layer's contrast limits become ``level -/+ width / 2``. Only the display changes,
never the data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtWidgets import QGridLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ._common import image_array, notify_error

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


def _not_ct(layer) -> str | None:
    """Why ``layer`` is not a CT in Hounsfield units, or None when it is (or may be)."""
    from napari_fcnseg.core.normalize import looks_like_ct
    from napari_fcnseg.layer_keys import MODALITY_KEY

    modality = str(layer.metadata.get(MODALITY_KEY, "")).upper()
    if modality == "CT":
        return None
    if modality:
        return (f"'{layer.name}' is {modality}, not CT: CT windows are in Hounsfield units and "
                "mean nothing for it. Adjust its contrast in the layer controls instead.")
    data = image_array(layer)
    sample = np.asarray(data[tuple(slice(None, None, max(1, n // 64)) for n in data.shape)])
    if not looks_like_ct(sample):
        return (f"'{layer.name}' does not look like a CT in Hounsfield units (its values do "
                "not span air to bone); the window was not applied.")
    return None


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
        problem = _not_ct(layer)
        if problem:
            notify_error(problem)
            self.status.setText(problem)
            return False
        level, width = WINDOW_PRESETS[preset]
        low, high = window_limits(level, width)
        layer.contrast_limits_range = (min(low, layer.contrast_limits_range[0]),
                                       max(high, layer.contrast_limits_range[1]))
        layer.contrast_limits = (low, high)
        self.status.setText(f"'{layer.name}': {preset} window (L {level:g} / W {width:g} HU).")
        return True
