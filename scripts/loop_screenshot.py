"""Render the review loop for the README: segment, correct, review, fine-tune, re-segment.

    xvfb-run -a -s "-screen 0 1600x1000x24" \
        .venv/bin/python scripts/loop_screenshot.py docs/loop.png

Writes the picture and a second one with the Volumes panel (``..._volumes.png``). Uses the
generated MR sample and the widgets docked as napari's Plugins menu docks them; the
fine-tune is short (30 steps), so the figures in the picture are not benchmark figures.
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np


def _wait(future, timeout: float = 900.0) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + timeout
    while not future.done() and time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def main(out: str) -> int:
    import os

    os.environ.setdefault("NAPARI_FCNSEG_MODEL_DIR", tempfile.mkdtemp())
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari-fcnseg: the review loop")
    viewer.window._qt_window.resize(1600, 1000)
    viewer.open_sample("napari-fcnseg", "mr_abdomen")
    image = viewer.layers["MR-like abdomen"]
    truth = viewer.layers["MR-like abdomen ground truth"]
    truth.visible = False
    _, seg = viewer.window.add_plugin_dock_widget("napari-fcnseg", "Segment")
    review_dock, review = viewer.window.add_plugin_dock_widget("napari-fcnseg",
                                                               "Review and Fine-tune")
    volumes_dock, _ = viewer.window.add_plugin_dock_widget("napari-fcnseg", "Volumes",
                                                           tabify=True)
    seg.image_layer = image
    seg.uncertainty_check.setChecked(True)
    _wait(seg.segment("volume"))
    labels = viewer.layers["MR-like abdomen labels"]
    for z in (10, 20):  # correct two slices to the truth, as a person would with the brush
        changed = np.nonzero(labels.data[z] != truth.data[z])
        labels.data_setitem((np.full(changed[0].size, z), *changed), truth.data[z][changed])
    review.mark_reviewed([10, 20, 26])
    review.steps_spin.setValue(30)
    _wait(review.finetune())
    _wait(review.resegment_unreviewed())
    viewer.layers["MR-like abdomen uncertainty"].visible = False
    viewer.layers.selection.active = labels
    viewer.dims.set_current_step(0, 15)
    volumes_dock.raise_()
    review_dock.raise_()
    for _ in range(30):
        QApplication.processEvents()
        time.sleep(0.03)
    bar = review._scroll.verticalScrollBar()
    bar.setValue(bar.maximum())  # the result table and the loss curve
    for _ in range(10):
        QApplication.processEvents()
        time.sleep(0.03)
    viewer.screenshot(out, canvas_only=False)
    volumes_dock.raise_()  # a second picture: the Volumes panel after the round
    for _ in range(40):
        QApplication.processEvents()
        time.sleep(0.03)
    viewer.screenshot(out.replace(".png", "_volumes.png"), canvas_only=False)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "loop.png"))
