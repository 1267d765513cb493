import threading

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_fcnseg.core.normalize import fit_normalizer
from napari_fcnseg.core.predict import Prediction, predict
from napari_fcnseg.core.progress import Progress
from napari_fcnseg.core.review import METADATA_KEY, ReviewState
from napari_fcnseg.core.store import ModelStore
from napari_fcnseg.widgets._common import validate_image_layer
from napari_fcnseg.widgets.segment import SegmentWidget
from napari_fcnseg.widgets.session import models_changed, session_for

TIMEOUT = 60_000


def _expected(name, image, slices=None):
    net = ModelStore().load(name).net
    return predict(net, image, slices=slices, normalizer=fit_normalizer(image)).labels


@pytest.fixture
def setup(make_napari_viewer, tiny_model, ct_volume):
    image, spacing = ct_volume
    viewer = make_napari_viewer()
    layer = viewer.add_image(image, name="ct", scale=spacing, translate=(10.0, -5.0, 3.0),
                             units="mm", axis_labels=("z", "y", "x"))
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment")
    return viewer, widget, layer


def _run(qtbot, widget, *args, **kwargs):
    future = widget.segment(*args, **kwargs)
    qtbot.waitUntil(future.done, timeout=TIMEOUT)
    return future


def test_segment_whole_volume(qtbot, setup):
    viewer, widget, image = setup
    assert session_for(viewer).segmenter() is widget
    assert widget.image_layer is image
    assert widget.model_name == "tiny"
    future = _run(qtbot, widget, "volume")
    assert future.result() == list(range(8))
    labels = widget.labels_layer
    assert labels is viewer.layers["ct labels"]
    assert labels.data.dtype == np.uint8
    np.testing.assert_array_equal(labels.data, _expected("tiny", image.data))
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    assert labels.units == image.units
    assert tuple(labels.axis_labels) == ("z", "y", "x")
    state = ReviewState.from_metadata(labels.metadata[METADATA_KEY])
    assert state.model == "tiny"
    assert sorted(state.predicted) == list(range(8))
    assert state.classes == ["background", "organ", "lesion"]
    assert not widget.busy and widget.segment_button.isEnabled()
    assert "Wrote 8 slice(s)" in widget.status_label.text()


def test_segment_current_slice_keeps_whole_volume_normalisation(qtbot, setup):
    viewer, widget, image = setup
    viewer.dims.set_current_step(0, 5)
    assert widget.current_slice() == 5
    widget.scope_combo.setCurrentText("Current slice")
    qtbot.mouseClick(widget.segment_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: widget.labels_layer is not None and not widget.busy, timeout=TIMEOUT)
    labels = widget.labels_layer.data
    expected = _expected("tiny", image.data)
    np.testing.assert_array_equal(labels[5], expected[5])
    assert not labels[[0, 1, 2, 3, 4, 6, 7]].any()
    state = ReviewState.from_metadata(widget.labels_layer.metadata)
    assert list(state.predicted) == [5]


def test_current_slice_of_a_4d_image(qtbot, make_napari_viewer, tiny_model, ct_volume):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.stack([ct_volume[0][:4], ct_volume[0][4:]]), name="t")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    viewer.dims.set_current_step(0, 1)
    viewer.dims.set_current_step(1, 2)
    assert widget.current_slice() == 6
    future = _run(qtbot, widget, "slice")
    assert future.result() == [6]
    data = widget.labels_layer.data
    np.testing.assert_array_equal(data[1, 2], _expected("tiny", image.data)[1, 2])
    assert data.sum() == data[1, 2].sum()


def test_edited_and_reviewed_slices_survive_resegmentation(qtbot, setup, make_model):
    viewer, widget, image = setup
    _run(qtbot, widget, "volume")
    labels = widget.labels_layer
    labels.brush_size = 7
    viewer.dims.set_current_step(0, 2)
    labels.paint((2, 30, 30), 2, refresh=True)
    ys, xs = np.mgrid[10:20, 40:50]
    labels.data_setitem((np.full(ys.size, 5), ys.ravel(), xs.ravel()), 1)
    state = ReviewState.from_metadata(labels.metadata)
    state.mark_reviewed([6])
    labels.metadata[METADATA_KEY] = state.to_metadata()
    before = labels.data.copy()
    assert (before[2] == 2).sum() >= 20 and (before[5, 10:20, 40:50] == 1).all()

    make_model("other", seed=7)
    assert widget.select_model("other")
    future = _run(qtbot, widget, "volume")
    assert future.result() == [0, 1, 3, 4, 7]
    new = _expected("other", image.data)
    for k in (2, 5, 6):
        assert labels.data[k].tobytes() == before[k].tobytes()
    for k in (0, 1, 3, 4, 7):
        np.testing.assert_array_equal(labels.data[k], new[k])
    assert not np.array_equal(new[2], before[2])
    assert "kept 3 edited/reviewed" in widget.status_label.text()
    assert ReviewState.from_metadata(labels.metadata).model == "other"

    assert not widget.undo_button.isEnabled()  # nothing of the person's was replaced
    widget.overwrite_check.setChecked(True)
    future = _run(qtbot, widget, "volume")
    assert future.result() == list(range(8))
    np.testing.assert_array_equal(labels.data, new)
    assert ReviewState.from_metadata(labels.metadata).reviewed == set()
    assert "replaced 3 edited/reviewed" in widget.status_label.text()

    # changed their mind: paint over the new slice 5, then undo the overwrite
    qtbot.waitUntil(widget.undo_button.isEnabled, timeout=TIMEOUT)
    labels.data_setitem((np.array([5]), np.array([0]), np.array([0])), 2)
    painted = labels.data[5].copy()
    qtbot.mouseClick(widget.undo_button, Qt.MouseButton.LeftButton)
    for k in (2, 6):
        assert labels.data[k].tobytes() == before[k].tobytes()
    assert labels.data[5].tobytes() == painted.tobytes()  # changed since: left alone
    for k in (0, 1, 3, 4, 7):
        np.testing.assert_array_equal(labels.data[k], new[k])
    state = ReviewState.from_metadata(labels.metadata)
    assert state.reviewed == {6}
    assert "Put back 2 slice(s)" in widget.status_label.text()
    assert "changed since" in widget.status_label.text()
    assert not widget.undo_button.isEnabled()
    # the next run keeps them again
    widget.overwrite_check.setChecked(False)
    assert _run(qtbot, widget, "volume").result() == [0, 1, 3, 4, 7]
    for k in (2, 6):
        assert labels.data[k].tobytes() == before[k].tobytes()


def test_undo_is_dropped_with_its_layer(qtbot, setup, notifications):
    viewer, widget, image = setup
    _run(qtbot, widget, "volume")
    labels = widget.labels_layer
    for _ in range(2):
        labels.data_setitem((np.array([1]), np.array([0]), np.array([0])), 2)  # an edit
        widget.overwrite_check.setChecked(True)
        _run(qtbot, widget, "volume")
        qtbot.waitUntil(widget.undo_button.isEnabled, timeout=TIMEOUT)
        # undo is about the latest run: one that replaced nothing of the person's ends it
        widget.overwrite_check.setChecked(False)
        _run(qtbot, widget, "volume")
        qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
        assert not widget.undo_button.isEnabled()
    labels.data_setitem((np.array([1]), np.array([0]), np.array([0])), 2)
    widget.overwrite_check.setChecked(True)
    _run(qtbot, widget, "volume")
    qtbot.waitUntil(widget.undo_button.isEnabled, timeout=TIMEOUT)
    viewer.layers.remove(labels)
    assert not widget.undo_button.isEnabled()
    assert widget.undo_overwrite() == [] and "nothing to undo" in notifications[-1][1]


def test_cancel_leaves_labels_untouched(qtbot, setup, monkeypatch):
    viewer, widget, image = setup
    _run(qtbot, widget, "volume")
    before = widget.labels_layer.data.copy()
    gate, reached_end = threading.Event(), []

    def slow_predict_iter(net, data, **kwargs):
        yield Progress(1, 3, "first batch done")
        gate.wait(10)
        yield Progress(2, 3, "second batch done")
        reached_end.append(True)
        return Prediction(np.full(data.shape, 2, np.uint8), None, list(range(8)))

    monkeypatch.setattr("napari_fcnseg.core.predict.predict_iter", slow_predict_iter)
    future = widget.segment("volume")
    qtbot.waitUntil(lambda: widget.status_label.text() == "first batch done", timeout=TIMEOUT)
    assert widget.cancel_button.isEnabled()
    qtbot.mouseClick(widget.cancel_button, Qt.MouseButton.LeftButton)
    gate.set()
    qtbot.waitUntil(future.done, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert future.cancelled()
    assert not reached_end
    assert widget.labels_layer.data.tobytes() == before.tobytes()
    assert "Cancelled" in widget.status_label.text()
    assert widget.segment_button.isEnabled()


def test_probability_layers(qtbot, setup):
    viewer, widget, image = setup
    widget.probability_check.setChecked(True)
    _run(qtbot, widget, "volume")
    for cls in ("organ", "lesion"):
        layer = viewer.layers[f"ct {cls} probability"]
        assert layer.data.dtype == np.uint8 and layer.data.shape == image.data.shape
        np.testing.assert_allclose(layer.scale, image.scale)
    assert viewer.layers[-1] is widget.labels_layer
    assert [widget.image_combo.itemText(i) for i in range(widget.image_combo.count())] == ["ct"]


def test_the_model_is_loaded_once_and_off_the_main_thread(qtbot, setup, monkeypatch):
    viewer, widget, image = setup
    calls = []
    real_load = ModelStore.load

    def load(self, name):
        calls.append((name, threading.current_thread() is threading.main_thread()))
        return real_load(self, name)

    monkeypatch.setattr(ModelStore, "load", load)
    for _ in range(2):
        assert _run(qtbot, widget, "slice").result() == [widget.current_slice()]
    assert calls == [("tiny", False)]
    models_changed.emit()  # e.g. a model was renamed or replaced: load it afresh
    assert _run(qtbot, widget, "slice").result() == [widget.current_slice()]
    assert calls == [("tiny", False)] * 2
    # the store changes while a run loads the model: that load is not kept
    models_changed.emit()
    future = widget.segment("slice")
    models_changed.emit()
    qtbot.waitUntil(future.done, timeout=TIMEOUT)
    assert _run(qtbot, widget, "slice").result() == [widget.current_slice()]
    assert calls == [("tiny", False)] * 4


def test_errors_are_notifications(qtbot, setup, notifications, monkeypatch):
    viewer, widget, image = setup

    def refused(future, text):
        assert future.done() and future.exception() is not None
        assert notifications and notifications[-1][0] == "error"
        assert text in notifications[-1][1]
        notifications.clear()

    # nothing was overwritten yet
    assert widget.undo_overwrite() == []
    assert "nothing to undo" in notifications.pop()[1]
    # a colour image
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="photo", rgb=True)
    widget.image_layer = "photo"
    refused(widget.segment(), "colour")
    # a mask, not an image
    viewer.add_image(np.zeros((4, 16, 16), bool), name="mask")
    widget.image_layer = "mask"
    refused(widget.segment(), "boolean")
    widget.image_layer = image
    # labels with more classes than the model knows
    clash = viewer.add_labels(np.zeros(image.data.shape, np.uint8), name="ct labels")
    clash.data[0, 0, 0] = 5
    refused(widget.segment(), "knows only 3 classes")
    assert clash.data.sum() == 5
    viewer.layers.remove(clash)
    # slices out of range, and an unknown model
    refused(widget.segment(slices=[99]), "between 0 and 7")
    assert not widget.select_model("nope") and "nope" in notifications.pop()[1]
    # a model whose file is broken
    root = ModelStore().root
    (root / "broken.json").write_text((root / "tiny.json").read_text())
    (root / "broken.pt").write_bytes(b"not weights")
    assert widget.select_model("broken")
    future = widget.segment()  # the model is loaded in the worker, so this fails a bit later
    qtbot.waitUntil(future.done, timeout=30_000)
    refused(future, "Cannot load model 'broken'")
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert "ct labels" not in viewer.layers
    # weights missing altogether: refused at once
    (root / "broken.pt").unlink()
    widget.refresh_models()
    assert widget.select_model("broken")
    refused(widget.segment(), "weights file is missing")
    widget.select_model("tiny")

    # a failure inside the worker
    def failing(net, data, **kwargs):
        yield Progress(1, 2)
        raise ValueError("the network exploded")

    monkeypatch.setattr("napari_fcnseg.core.predict.predict_iter", failing)
    future = _run(qtbot, widget)
    refused(future, "the network exploded")
    assert "ct labels" not in viewer.layers
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)  # "finished" follows "errored"


def test_same_name_labels_with_other_shape_are_left_alone(qtbot, setup):
    viewer, widget, image = setup
    other = viewer.add_labels(np.ones((4, 10, 10), np.uint8), name="ct labels")
    future = _run(qtbot, widget)
    assert future.result() == list(range(8))
    assert widget.labels_layer is not other
    assert widget.labels_layer.name.startswith("ct labels")
    assert (other.data == 1).all()


def test_busy_widget_refuses_a_second_run(qtbot, setup, notifications):
    viewer, widget, image = setup
    first = widget.segment()
    second = widget.segment()
    assert second.done() and isinstance(second.exception(), RuntimeError)
    assert "already running" in notifications[-1][1]
    qtbot.waitUntil(first.done, timeout=TIMEOUT)
    assert first.result() == list(range(8))


def test_validate_image_layer_messages():
    from napari.layers import Image, Labels, Points

    assert validate_image_layer(Image(np.zeros((4, 8, 8), np.int16))) is None
    assert "Points" in validate_image_layer(Points(np.zeros((1, 2))))
    assert "Labels" in validate_image_layer(Labels(np.zeros((8, 8), np.uint8)))
    assert "colour" in validate_image_layer(Image(np.zeros((8, 8, 3)), rgb=True))
    assert "boolean" in validate_image_layer(Image(np.zeros((8, 8), bool)))
    assert "Choose" in validate_image_layer(None)
    empty = Image(np.zeros((8, 8)))
    empty.data = np.zeros((0, 8, 8))
    assert "no image data" in validate_image_layer(empty)


def test_demo_saves_a_screenshot_with_labels(tiny_model, tmp_path, monkeypatch):
    from napari_fcnseg import demo

    monkeypatch.setattr(demo, "WINDOW_SIZE", (900, 600))
    shot = tmp_path / "demo.png"
    assert demo.run_demo(screenshot=str(shot)) == 0
    assert shot.stat().st_size > 10_000
