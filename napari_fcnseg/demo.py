"""A one-command demonstration: a generated scan, the plugin's panels and a first segmentation.

``napari-fcnseg demo`` opens napari with a generated CT-like (or MR-like) abdomen, docks the
Segment, Review and Fine-tune, Models, Volumes and CT window panels, segments the whole volume
with the default model and shows a slice through the middle. With ``--screenshot PATH`` it saves
a picture of the window instead of staying open.
"""

from __future__ import annotations

import sys
import time
from typing import Any

PLUGIN = "napari-fcnseg"
WINDOW_SIZE = (1600, 1000)


def _dock(viewer: Any, name: str, tabify: bool = False) -> tuple[Any, Any]:
    """Dock the plugin widget ``name``; returns (dock, widget), or Nones when it fails."""
    try:
        return viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=tabify)
    except Exception as exc:  # a panel that fails to load must not stop the demo
        print(f"napari-fcnseg demo: the '{name}' panel could not be opened: {exc}",
              file=sys.stderr)
        return None, None


def _wait(future: Any, timeout: float = 600.0) -> None:
    """Process Qt events until ``future`` is done (the worker reports on the main thread)."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + timeout
    while not future.done() and time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def run_demo(screenshot: str | None = None, modality: str = "CT") -> int:
    """Open the demonstration viewer.

    Parameters
    ----------
    screenshot : str, optional
        Save a screenshot of the whole window to this path, close napari and return.
        Without it, napari stays open until the user closes it.
    modality : {"CT", "MR"}
        Which generated abdomen to show.

    Returns
    -------
    int
        0 on success, 1 when the segmentation failed (the reason is printed).
    """
    import napari

    from napari_fcnseg._sample_data import generated_abdomen

    viewer = napari.Viewer(title="napari-fcnseg demo")
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    (image, image_meta, _), _truth = generated_abdomen(modality)
    layer = viewer.add_image(image, **image_meta)  # no ground truth: the demo is the loop
    _, segment = _dock(viewer, "Segment")
    review_dock, _ = _dock(viewer, "Review and Fine-tune")
    _dock(viewer, "Models", tabify=True)
    _dock(viewer, "Volumes", tabify=True)
    _dock(viewer, "CT window", tabify=True)
    viewer.layers.selection.active = layer

    status = 0
    if segment is None:
        status = 1
    else:
        segment.image_layer = layer
        future = segment.segment("volume")
        _wait(future)
        if not future.done() or future.cancelled() or future.exception() is not None:
            reason = "timed out" if not future.done() else (
                "cancelled" if future.cancelled() else str(future.exception()))
            print(f"napari-fcnseg demo: segmentation failed: {reason}", file=sys.stderr)
            status = 1
        elif segment.labels_layer is not None:
            viewer.layers.selection.active = segment.labels_layer
    viewer.dims.set_current_step(0, image.shape[0] // 2)
    viewer.reset_view()
    if review_dock is not None:
        review_dock.raise_()  # the next step after segmenting: review and fine-tune

    if screenshot is None:
        napari.run()
        return status
    from qtpy.QtWidgets import QApplication

    for _ in range(20):  # let the panels and canvas draw
        QApplication.processEvents()
        time.sleep(0.02)
    viewer.screenshot(screenshot, canvas_only=False)
    viewer.close()
    return status
