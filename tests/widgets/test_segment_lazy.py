"""Segment on an image layer read on demand (dask): labels go to a zarr store, not to RAM."""

import dask.array as da
import numpy as np
import pytest

from napari_fcnseg.core.review import ReviewState
from napari_fcnseg.io import read_volume
from napari_fcnseg.widgets.segment import SegmentWidget

TIMEOUT = 60_000


@pytest.fixture
def lazy_setup(make_napari_viewer, tiny_model, ct_volume, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_FCNSEG_LABELS_DIR", str(tmp_path / "labels"))
    image, spacing = ct_volume
    viewer = make_napari_viewer()
    viewer.add_image(image, name="ct in memory", scale=spacing)
    lazy = viewer.add_image(da.from_array(image, chunks=(1, *image.shape[1:])), name="ct",
                            scale=spacing)
    _, widget = viewer.window.add_plugin_dock_widget("napari-fcnseg", "Segment")
    assert isinstance(widget, SegmentWidget)
    return viewer, widget, lazy, image


def _segment(qtbot, widget, image_layer, **kwargs):
    widget.image_layer = image_layer
    future = widget.segment("volume", **kwargs)
    qtbot.waitUntil(future.done, timeout=TIMEOUT)
    return future


def test_a_dask_image_is_segmented_into_a_zarr_backed_labels_layer(qtbot, lazy_setup, tmp_path):
    viewer, widget, lazy, image = lazy_setup
    future = _segment(qtbot, widget, lazy)
    assert future.exception() is None and future.result() == list(range(len(image)))
    labels = viewer.layers["ct labels"]
    assert not isinstance(labels.data, np.ndarray)  # backed by the store, not held in RAM
    stores = list((tmp_path / "labels").glob("*.zarr"))
    assert len(stores) == 1 and not list((tmp_path / "labels").glob(".*"))
    _segment(qtbot, widget, viewer.layers["ct in memory"])
    in_memory = viewer.layers["ct in memory labels"].data
    assert np.array_equal(np.asarray(labels.data[:]), in_memory)  # CT: the same fixed window
    assert np.array_equal(read_volume(stores[0]).data[:], in_memory)
    state = ReviewState.from_metadata(labels.metadata)
    assert sorted(state.predicted) == list(range(len(image)))


def test_a_second_run_merges_into_the_zarr_labels_and_keeps_edited_slices(qtbot, lazy_setup):
    viewer, widget, lazy, image = lazy_setup
    _segment(qtbot, widget, lazy)
    labels = viewer.layers["ct labels"]
    labels.data[2] = 1  # a person paints slice 2 whole
    future = _segment(qtbot, widget, lazy)
    assert future.exception() is None and 2 not in future.result()
    assert (np.asarray(labels.data[2]) == 1).all()


def test_probability_layers_are_refused_for_an_image_read_on_demand(qtbot, lazy_setup,
                                                                    notifications):
    viewer, widget, lazy, _ = lazy_setup
    widget.probability_check.setChecked(True)
    future = _segment(qtbot, widget, lazy)
    assert future.exception() is not None and "in memory" in str(future.exception())
    assert "ct labels" not in [layer.name for layer in viewer.layers]


def test_a_multiscale_image_is_segmented_at_full_resolution(qtbot, lazy_setup):
    viewer, widget, _, image = lazy_setup
    pyramid = viewer.add_image([image, image[:, ::2, ::2]], multiscale=True, name="pyramid",
                               scale=viewer.layers["ct"].scale)
    future = _segment(qtbot, widget, pyramid)
    assert future.exception() is None and future.result() == list(range(len(image)))
    labels = viewer.layers["pyramid labels"]
    _segment(qtbot, widget, viewer.layers["ct in memory"])
    assert labels.data.shape == image.shape
    assert np.array_equal(np.asarray(labels.data), viewer.layers["ct in memory labels"].data)
