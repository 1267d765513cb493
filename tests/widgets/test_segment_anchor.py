"""Segment widget: keep only the objects that touch the slices a person reviewed."""

import numpy as np
import pytest

from napari_fcnseg.core.predict import Prediction
from napari_fcnseg.core.review import METADATA_KEY, ReviewState, protected_slices, slice_digests

TIMEOUT = 60_000


def _network_output(shape):
    """What the 'network' says: a tumour (2) through slices 2-5, a stray spot (2) on slice 0,
    an organ (1) on every slice."""
    out = np.zeros(shape, np.uint8)
    out[:, 40:60, 40:60] = 1
    out[2:6, 10:16, 10:16] = 2
    out[0, 50:53, 5:8] = 2
    return out


@pytest.fixture
def docked(qtbot, make_napari_viewer, tiny_model, ct_volume, monkeypatch):
    image, spacing = ct_volume
    viewer = make_napari_viewer()
    viewer.add_image(image, name="ct", scale=spacing)

    def fake_predict_iter(net, data, slices=None, **kwargs):
        chosen = list(range(data.shape[0])) if slices is None else list(slices)
        labels = np.zeros(data.shape, np.uint8)
        labels[chosen] = _network_output(data.shape)[chosen]
        return Prediction(labels, None, chosen)
        yield  # a generator, as the real one

    # the widget's own worker runs, with the network's output fixed
    monkeypatch.setattr("napari_fcnseg.core.predict.predict_iter", fake_predict_iter)
    _, widget = viewer.window.add_plugin_dock_widget("napari-fcnseg", "Segment")
    return viewer, widget


def _run(qtbot, widget):
    future = widget.segment("volume")
    qtbot.waitUntil(future.done, timeout=TIMEOUT)
    return future


def test_only_the_reviewed_tumour_is_kept_when_resegmenting(qtbot, docked):
    viewer, widget = docked
    widget.anchor_combo.choose_class("lesion")
    assert widget.anchor_combo.classes() == [2]
    _run(qtbot, widget)  # no labels layer yet: nothing reviewed, everything kept
    assert "every object was kept" in widget.status_label.text()
    labels = widget.labels_layer
    np.testing.assert_array_equal(labels.data, _network_output(labels.data.shape))

    state = ReviewState.from_metadata(labels.metadata)
    state.mark_reviewed([3])  # the person checked the tumour on slice 3
    labels.metadata[METADATA_KEY] = state.to_metadata()
    reviewed_slice = labels.data[3].copy()
    assert _run(qtbot, widget).result() == [0, 1, 2, 4, 5, 6, 7]

    expected = _network_output(labels.data.shape)
    expected[0, 50:53, 5:8] = 0  # the stray spot touches no reviewed tumour: background
    np.testing.assert_array_equal(labels.data, expected)
    assert labels.data[3].tobytes() == reviewed_slice.tobytes()
    assert "removed 1 lesion object(s) (9 voxels)" in widget.status_label.text()
    # what was written is recorded as the model's: slice 0 does not count as edited by hand
    state = ReviewState.from_metadata(labels.metadata)
    assert protected_slices(labels.data, state) == [3]


def test_every_object_is_the_default_and_overwrite_cannot_be_combined(qtbot, docked,
                                                                      notifications):
    viewer, widget = docked
    assert widget.anchor_combo.classes() == []
    widget.anchor_combo.choose_class("*")
    assert widget.anchor_combo.classes() == [1, 2]
    widget.overwrite_check.setChecked(True)
    future = widget.segment("volume")
    assert future.done() and future.exception() is not None
    assert "untick 'Overwrite edited/reviewed slices'" in str(future.exception())
    assert widget.labels_layer is None
    with pytest.raises(ValueError, match="not a class"):
        widget.anchor_combo.choose_class("liver")


def test_the_worker_filters_against_the_snapshot_taken_when_the_run_started():
    from types import SimpleNamespace

    import zarr

    from napari_fcnseg.widgets._segment_anchor import ON_DISK, anchor_request, apply_anchor

    shape = (8, 64, 64)
    labels = _network_output(shape)
    state = ReviewState()
    state.record_prediction(slice_digests(labels), "tiny")  # the model wrote every slice
    state.mark_reviewed([3])
    layer = SimpleNamespace(data=labels, metadata={METADATA_KEY: state.to_metadata()})
    request = anchor_request(layer, [2], ["background", "organ", "lesion"])
    labels[3] = 0  # the person clears slice 3 while the run goes on: the snapshot keeps it
    prediction = Prediction(_network_output(shape), None, list(range(8)))
    note = apply_anchor(prediction, request)
    assert "removed 1 lesion object(s) (9 voxels)" in note
    assert not (prediction.labels[0] == 2).any() and (prediction.labels[2] == 2).any()

    assert anchor_request(layer, [], ["background", "organ", "lesion"]) is None
    on_disk = SimpleNamespace(data=zarr.zeros(shape, dtype="u1"), metadata={})
    untouched = Prediction(_network_output(shape), None, list(range(8)))
    assert apply_anchor(untouched, anchor_request(on_disk, [2], ["bg", "o", "l"])) == ON_DISK
    np.testing.assert_array_equal(untouched.labels, _network_output(shape))
