"""Smoke test of the plugin as users install it: a wheel, non-editable, docked by napari.

Run by ``scripts/installed_check.sh`` from outside the source tree, so the installed package is
the one imported.
"""

from pathlib import Path

import numpy as np

import napari_fcnseg


def test_the_installed_package_is_not_the_source_tree():
    assert "site-packages" in napari_fcnseg.__file__
    weights = Path(napari_fcnseg.__file__).parent / "core" / "weights"
    assert (weights / "bundled.pt").stat().st_size > 1_000_000  # the weights are in the wheel
    assert (weights / "bundled.json").is_file()


def test_dock_the_widgets_and_segment_the_sample(make_napari_viewer, qtbot, tmp_path,
                                                 monkeypatch):
    monkeypatch.setenv("NAPARI_FCNSEG_MODEL_DIR", str(tmp_path / "models"))
    viewer = make_napari_viewer()
    viewer.open_sample("napari-fcnseg", "ct_abdomen")
    _, seg = viewer.window.add_plugin_dock_widget("napari-fcnseg", "Segment")
    for name in ("Review and Fine-tune", "Models", "Volumes", "CT window"):
        viewer.window.add_plugin_dock_widget("napari-fcnseg", name)
    future = seg.segment("slice")
    qtbot.waitUntil(future.done, timeout=120_000)
    assert future.exception() is None
    labels = viewer.layers["CT-like abdomen labels"]
    assert np.asarray(labels.data).any()
