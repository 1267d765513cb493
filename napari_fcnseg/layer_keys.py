"""The plugin's marks on napari layers: metadata keys, axis names and the CT display window.

A leaf module (it imports nothing of the package), so the npe2 glue (reader, writer, samples)
and the widgets can share these without importing each other. The review state's key lives
with the review state itself (:data:`napari_fcnseg.core.review.METADATA_KEY`).
"""

from __future__ import annotations

from typing import Any

#: Image layer metadata: the modality ("CT", "MR") the file declared.
MODALITY_KEY = "napari-fcnseg-modality"
#: Layer metadata: the file or folder the layer was read from.
SOURCE_KEY = "napari-fcnseg-source"
#: Image layer metadata marking the probability layers the plugin made (value: the class name).
PROBABILITY_KEY = "napari-fcnseg-probability"
#: Contrast limits CT opens with: the soft-tissue window, level 40 HU, width 400 HU. (The
#: network's input window is another one: napari_fcnseg.core.normalize.CT_WINDOW.)
CT_DISPLAY_WINDOW = (-160.0, 240.0)

#: napari's (data, layer attributes, layer type) tuple.
LayerDataTuple = tuple[Any, dict[str, Any], str]


def axis_labels(ndim: int) -> tuple[str, ...]:
    """Axis names for an image of ``ndim`` axes: (..., "t", "z", "y", "x"), slices along "z"."""
    names = ("t", "z", "y", "x")[4 - min(ndim, 4):]
    return (*(f"axis {i}" for i in range(ndim - len(names))), *names)
