"""The Volumes panel: mL, voxels and parts per class, current after edits, exported as CSV."""

import csv
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from napari_fcnseg.core.metrics import class_volumes
from napari_fcnseg.io import ImageWriteError

pytestmark = pytest.mark.gui


def test_class_volumes_counts_parts_and_millilitres():
    labels = np.zeros((4, 10, 10), np.uint8)
    labels[0, :2, :2] = 1
    labels[3, 5:, 5:] = 1
    labels[1, 4, 4] = 3
    rows = class_volumes(labels, (2.0, 1.0, 1.0), ["background", "organ", "lesion"])
    assert [(r["name"], r["voxels"], r["components"]) for r in rows] == [
        ("organ", 29, 2), ("lesion", 0, 0), ("class 3", 1, 1)]
    assert rows[0]["ml"] == pytest.approx(29 * 2.0 / 1000)
    assert class_volumes(labels)[0]["ml"] is None


def test_panel_follows_edits_and_exports_csv(qtbot, make_napari_viewer, tmp_path):
    from napari_fcnseg.class_style import class_features

    viewer = make_napari_viewer()
    data = np.zeros((3, 20, 20), np.uint8)
    data[1, 2:6, 2:6] = 2
    viewer.add_labels(data, name="seg", scale=(2.0, 0.5, 0.5),
                      features=class_features(["background", "liver", "tumour"]))
    _, panel = viewer.window.add_plugin_dock_widget("napari-fcnseg", "Volumes")
    qtbot.waitUntil(lambda: any(r["name"] == "tumour" for r in panel.rows), timeout=10_000)
    tumour = next(r for r in panel.rows if r["name"] == "tumour")
    assert tumour["voxels"] == 16 and tumour["components"] == 1
    assert tumour["ml"] == pytest.approx(16 * 0.5 / 1000)
    layer = viewer.layers["seg"]
    layer.brush_size = 1
    layer.paint((2, 15, 15), 2)  # a second, separate lesion
    qtbot.waitUntil(lambda: next(r for r in panel.rows if r["name"] == "tumour")[
        "components"] == 2, timeout=10_000)
    out = panel.export_csv(tmp_path / "v.csv")
    rows = list(csv.DictReader(Path(out).open()))
    assert [r["class"] for r in rows] == ["liver", "tumour"] and rows[1]["parts"] == "2"


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="POSIX only")
def test_export_never_replaces_a_device(make_napari_viewer):
    viewer = make_napari_viewer()
    _, panel = viewer.window.add_plugin_dock_widget("napari-fcnseg", "Volumes")
    with pytest.raises(ImageWriteError):
        panel.export_csv("/dev/null")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_panel_moves_to_the_plugins_labels_unless_the_person_picked(make_napari_viewer, qtbot):
    from napari_fcnseg.core.review import METADATA_KEY

    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((2, 8, 8), np.uint8), name="ground truth")
    _, panel = viewer.window.add_plugin_dock_widget("napari-fcnseg", "Volumes")
    assert panel.labels_layer.name == "ground truth"  # the only one so far
    viewer.add_labels(np.ones((2, 8, 8), np.uint8), name="scan labels",
                      metadata={METADATA_KEY: {"reviewed": []}})
    assert panel.labels_layer.name == "scan labels"  # the plugin's layer wins
    panel._user_choice = "ground truth"  # as when picked in the combo box
    viewer.add_labels(np.ones((2, 8, 8), np.uint8), name="other",
                      metadata={METADATA_KEY: {"reviewed": []}})
    assert panel.labels_layer.name == "ground truth"
