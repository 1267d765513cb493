import numpy as np
import pytest

from napari_fcnseg.widgets.window import WINDOW_PRESETS, WindowWidget, window_limits


def test_each_preset_sets_level_and_width_on_the_selected_image(make_napari_viewer):
    viewer = make_napari_viewer()
    data = np.linspace(-1000, 1000, 4 * 16 * 16).reshape(4, 16, 16).astype(np.int16)
    ct = viewer.add_image(data, name="ct")
    viewer.add_image(np.zeros((4, 16, 16)), name="other")
    viewer.layers.selection.active = ct
    widget = WindowWidget(viewer)
    for name, (level, width) in WINDOW_PRESETS.items():
        widget.buttons[name].click()
        assert ct.contrast_limits == pytest.approx([level - width / 2, level + width / 2])
    assert window_limits(40, 400) == (-160, 240)
    np.testing.assert_array_equal(ct.data, data)  # only the display changes


def test_no_image_selected_is_a_notification_not_a_crash(make_napari_viewer, monkeypatch):
    messages = []
    monkeypatch.setattr("napari_fcnseg.widgets.window.notify_error", messages.append)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8)), name="a")
    viewer.add_image(np.zeros((8, 8)), name="b")
    viewer.add_points(np.zeros((1, 2)))
    widget = WindowWidget(viewer)
    assert widget.apply("Lung") is False
    assert messages and "image" in messages[0]


def test_ct_windows_refuse_images_that_are_not_ct(make_napari_viewer, monkeypatch):
    messages = []
    monkeypatch.setattr("napari_fcnseg.widgets.window.notify_error", messages.append)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-fcnseg", "mr_abdomen")
    mr = viewer.layers["MR-like abdomen"]
    viewer.layers.selection.active = mr
    before = tuple(mr.contrast_limits)
    widget = WindowWidget(viewer)
    assert widget.apply("Lung") is False
    assert tuple(mr.contrast_limits) == before
    assert "MR, not CT" in messages[-1]
    photo = viewer.add_image(np.random.default_rng(0).integers(0, 255, (16, 16), np.uint8))
    viewer.layers.selection.active = photo
    assert widget.apply("Bone") is False and "Hounsfield" in messages[-1]
