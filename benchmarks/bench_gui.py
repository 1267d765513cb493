"""GUI benchmarks: event-loop stalls while working, and click-to-visible time for one slice.

Usage (needs a display; on a headless machine wrap it in ``xvfb-run -a``)::

    python benchmarks/bench_gui.py

Measures, in one napari window with the three widgets docked:
  1. the largest gap between ticks of a 10 ms QTimer while segmenting a 512x512x100 int16
     volume with the bundled model (the viewer must stay responsive), into a new labels layer
     and again into the existing one, and, for reference, while the same labels are added
     with ``viewer.add_labels``;
  2. the same while fine-tuning on 3 annotated 512x512 slices (default settings);
  3. the time from asking the Segment widget for the current 512x512 slice to its labels being
     drawn on the canvas (median of 5).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np


def _ticker(app):
    """Start a 10 ms QTimer; return (timer, list of tick times).

    The list starts with the time of the call, so work done synchronously by the click that
    follows (before the first tick) counts as a gap too.
    """
    from qtpy.QtCore import QTimer

    ticks: list[float] = [time.perf_counter()]
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    return timer, ticks


def _wait(app, future, timeout: float = 900.0) -> None:
    end = time.perf_counter() + timeout
    while not future.done():
        app.processEvents()
        time.sleep(0.001)
        if time.perf_counter() > end:
            raise TimeoutError("the benchmark did not finish in time")


def _settle(app, seconds: float = 1.0) -> None:
    """Let the viewer finish drawing and laying out before a measurement starts."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def _max_gap(ticks: list[float]) -> float:
    return max(np.diff(ticks)) * 1000 if len(ticks) > 1 else float("nan")


def main() -> None:
    os.environ.setdefault("NAPARI_FCNSEG_MODEL_DIR", tempfile.mkdtemp())
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_fcnseg.core.phantoms import generate_volume
    from napari_fcnseg.widgets.finetune import FinetuneWidget
    from napari_fcnseg.widgets.segment import SegmentWidget

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    vol = np.concatenate([generate_volume("CT", (50, 512, 512), s).image for s in (8, 9)])
    image = viewer.add_image(vol, name="ct", contrast_limits=(-160, 240))
    seg = SegmentWidget(viewer)
    ft = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(seg, name="Segment")
    viewer.window.add_dock_widget(ft, name="Review and Fine-tune")
    seg.image_layer = image
    rows = []

    # 1. segmentation of the whole volume, into a new layer and then into the same one again
    # (the second run rewrites every slice: none is edited or reviewed yet)
    for into in ("a new labels layer", "the existing labels layer"):
        _settle(app)
        timer, ticks = _ticker(app)
        t = time.perf_counter()
        _wait(app, seg.segment("volume"))
        seconds = time.perf_counter() - t
        _settle(app)  # what follows the result (first draw, the review list) counts too
        timer.stop()
        rows.append((f"largest event-loop gap while segmenting 512x512x100 into {into}, ms",
                     f"{_max_gap(ticks):.0f}"))
        rows.append((f"segmenting 512x512x100 through the widget into {into}, s",
                     f"{seconds:.1f}"))
    # the floor set by napari itself: the gap while the same labels are added as a new layer
    # directly (the plugin's docks stay open and react to it as they would to any layer)
    copy = np.array(seg.labels_layer.data)
    _settle(app)
    timer, ticks = _ticker(app)
    reference = viewer.add_labels(copy, name="reference labels", opacity=0.5)
    _settle(app)
    timer.stop()
    viewer.layers.remove(reference)
    rows.append(("for reference, viewer.add_labels of the same labels: largest gap, ms",
                 f"{_max_gap(ticks):.0f}"))

    # 2. fine-tuning on three reviewed slices
    labels = seg.labels_layer
    ft.image_layer, ft.labels_layer = image, labels
    for z in (30, 50, 70):
        viewer.dims.set_current_step(0, z)
        ft.mark_reviewed()
    _settle(app)
    timer, ticks = _ticker(app)
    t = time.perf_counter()
    _wait(app, ft.finetune())
    seconds = time.perf_counter() - t
    timer.stop()
    rows.append(("largest event-loop gap while fine-tuning (3 slices, default steps), ms",
                 f"{_max_gap(ticks):.0f}"))
    rows.append(("fine-tuning round through the widget, s", f"{seconds:.1f}"))

    # 3. current slice, click to visible
    seg.select_model("bundled")
    seg.overwrite_check.setChecked(True)
    times = []
    for z in (10, 25, 40, 60, 85):
        viewer.dims.set_current_step(0, z)
        app.processEvents()
        t = time.perf_counter()
        _wait(app, seg.segment("slice"))
        viewer.screenshot(canvas_only=True)  # forces a draw (and a read-back: conservative)
        times.append(time.perf_counter() - t)
    rows.append(("current 512x512 slice: Segment to labels drawn, median of 5, s",
                 f"{statistics.median(times):.2f}"))

    import torch

    print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), napari "
          f"{napari.__version__}, Python {platform.python_version()}")
    print("\n| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    viewer.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
