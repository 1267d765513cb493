"""Learning from strokes: only the pixels a person painted count on slices not reviewed."""

import numpy as np
import pytest
from napari.layers import Labels

from napari_fcnseg.core.store import ModelStore
from napari_fcnseg.widgets._strokes import IGNORE_LABEL, StrokeTracker, strokes_only
from napari_fcnseg.widgets.finetune import STROKES_ONLY

TIMEOUT = 60_000


def test_tracker_records_brush_fill_eraser_and_setitem_per_slice():
    layer = Labels(np.zeros((4, 32, 32), np.uint8))
    tracker = StrokeTracker(layer.data.shape)
    layer.events.paint.connect(tracker.on_paint)
    layer.brush_size = 5
    layer.paint((2, 10, 10), 1)
    layer.data_setitem((np.array([1, 1]), np.array([3, 4]), np.array([5, 5])), 2)
    assert tracker.painted_slices() == [1, 2]
    np.testing.assert_array_equal(tracker.painted(2), layer.data[2] != 0)
    layer.paint((2, 10, 10), 0)  # erasing is a stroke too: "background here"
    assert tracker.painted(2).sum() > 0 and not layer.data[2].any()
    assert tracker.painted(0) is None and tracker.painted(1).sum() == 2
    layer.fill((3, 20, 20), 1)
    assert tracker.painted(3).all()


def test_strokes_only_keeps_reviewed_slices_whole():
    tracker = StrokeTracker((3, 8, 8))
    tracker.add_indices((np.array([0, 0]), np.array([1, 2]), np.array([3, 3])))
    tracker.add_indices((np.array([2]), np.array([0]), np.array([0])))
    data = np.ones((3, 8, 8), np.uint8)
    out, ignore = strokes_only(data, [0, 1, 2], tracker, whole={2})
    assert ignore == IGNORE_LABEL and out.dtype == np.int32
    assert (out[0] != IGNORE_LABEL).sum() == 2 and out[0, 1, 3] == 1
    assert (out[1] == 1).all()  # edited without recorded strokes: whole slice
    assert (out[2] == 1).all()  # reviewed: whole slice
    same, none = strokes_only(data, [1], tracker, whole=set())
    assert none is None and same is data


@pytest.mark.gui
def test_finetune_from_strokes_through_the_plugins_menu(qtbot, make_napari_viewer, tiny_model,
                                                        monkeypatch):
    from napari_fcnseg.core import finetune as core_ft

    seen = {}
    real = core_ft.finetune_iter

    def spy(net, image, labels, **kwargs):
        seen["labels"], seen["kwargs"] = labels.copy(), kwargs
        return (yield from real(net, image, labels, **kwargs))

    monkeypatch.setattr(core_ft, "finetune_iter", spy)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-fcnseg", "mr_abdomen")
    _, seg = viewer.window.add_plugin_dock_widget("napari-fcnseg", "Segment")
    _, review = viewer.window.add_plugin_dock_widget("napari-fcnseg", "Review and Fine-tune")
    future = seg.segment("volume")
    qtbot.waitUntil(future.done, timeout=TIMEOUT)
    labels = seg.labels_layer
    labels.selected_label, labels.brush_size = 2, 7
    labels.paint((3, 40, 40), 2)
    labels.paint((3, 60, 60), 0)
    review.mark_reviewed([5])
    qtbot.waitUntil(lambda: review.training_slices() == [3, 5], timeout=5000)
    review.learn_from_combo.setCurrentText(STROKES_ONLY)
    review.steps_spin.setValue(2)
    review.heldout_check.setChecked(False)
    future = review.finetune()
    qtbot.waitUntil(future.done, timeout=TIMEOUT)
    name = future.result()
    assert seen["kwargs"]["ignore_label"] == IGNORE_LABEL
    used = seen["labels"]
    counted = used[3] != IGNORE_LABEL
    assert 0 < counted.sum() < 0.05 * counted.size  # two brush dabs on slice 3
    assert used[3][counted].max() == 2 and (used[3][counted] == 0).any()
    assert not (used[5] == IGNORE_LABEL).any()  # the reviewed slice counts whole
    np.testing.assert_array_equal(used[5], labels.data[5])
    assert ModelStore().load(name).metadata["slices"] == [3, 5]
