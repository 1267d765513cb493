"""napari_fcnseg/_sample_data.py: File > Open Sample, generated CT-like and MR-like abdomens."""

import numpy as np
import pytest

from napari_fcnseg._sample_data import SAMPLE_SHAPE, ct_abdomen, generated_abdomen, mr_abdomen
from napari_fcnseg.layer_keys import CT_DISPLAY_WINDOW as CT_WINDOW
from napari_fcnseg.layer_keys import MODALITY_KEY


def test_sample_data_is_deterministic_and_scaled():
    first = ct_abdomen()
    (image, image_meta, kind), (labels, labels_meta, labels_kind) = first
    assert (kind, labels_kind) == ("image", "labels")
    assert image.shape == labels.shape == (32, 256, 256)
    assert image.dtype == np.int16 and set(np.unique(labels)) <= {0, 1, 2}
    assert image_meta["contrast_limits"] == CT_WINDOW and image_meta["colormap"] == "gray"
    assert labels_meta["name"] == "CT-like abdomen ground truth"
    assert image_meta["scale"] == labels_meta["scale"] and len(image_meta["scale"]) == 3
    assert image_meta["axis_labels"] == labels_meta["axis_labels"] == ("z", "y", "x")
    assert np.array_equal(ct_abdomen()[0][0], image)
    (mr, mr_meta, _), _ = mr_abdomen()
    assert mr.dtype == np.float32 and mr_meta["contrast_limits"][0] < mr_meta["contrast_limits"][1]
    small = generated_abdomen("MR", seed=4, shape=(4, 32, 32))
    assert small[0][0].shape == (4, 32, 32)


SMALL = (4, 48, 48)


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_a_seed_gives_the_same_volume_every_time(modality):
    (image, image_meta, _), (labels, labels_meta, _) = generated_abdomen(modality, 7, SMALL)
    (again, again_meta, _), (again_labels, _, _) = generated_abdomen(modality.lower(), 7, SMALL)
    np.testing.assert_array_equal(again, image)
    np.testing.assert_array_equal(again_labels, labels)
    assert again_meta == image_meta
    (other, _, _), (other_labels, _, _) = generated_abdomen(modality, 8, SMALL)
    assert not np.array_equal(other, image)  # the seed matters
    assert image.shape == labels.shape == SMALL
    assert labels.dtype.kind in "iu" and set(np.unique(labels)) <= {0, 1, 2}
    assert 1 in labels  # the organ is there to segment
    assert image_meta["metadata"] == {MODALITY_KEY: modality}
    assert labels_meta["opacity"] == 0.5 and labels_meta["scale"] == image_meta["scale"]
    assert image_meta["units"] == labels_meta["units"] == "mm"


def test_the_menu_entries_are_the_default_seeds():
    assert SAMPLE_SHAPE == (32, 256, 256)
    for menu, modality, seed in ((ct_abdomen, "CT", 0), (mr_abdomen, "MR", 1)):
        (image, meta, _), (labels, _, _) = menu()
        (same, same_meta, _), (same_labels, _, _) = generated_abdomen(modality, seed)
        np.testing.assert_array_equal(same, image)
        np.testing.assert_array_equal(same_labels, labels)
        assert meta["name"] == f"{modality}-like abdomen" == same_meta["name"]


def test_mr_contrast_limits_span_the_image():
    (image, meta, _), _ = generated_abdomen("MR", 3, SMALL)
    low, high = meta["contrast_limits"]
    assert float(image.min()) <= low < high <= float(image.max())
    inside = np.mean((image >= low) & (image <= high))
    assert inside > 0.95  # a 0.5-99.5 % window leaves out only the extremes


@pytest.mark.gui
def test_sample_data_through_napari(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-fcnseg", "ct_abdomen")
    assert [layer.name for layer in viewer.layers] == [
        "CT-like abdomen",
        "CT-like abdomen ground truth",
    ]
    assert tuple(viewer.layers[0].contrast_limits) == CT_WINDOW
    assert tuple(viewer.layers[0].axis_labels) == ("z", "y", "x")
    if _napari_version() >= (0, 9):  # older napari keeps its own dims labels (0, 1, 2)
        assert tuple(viewer.dims.axis_labels) == ("z", "y", "x")


def _napari_version():
    import napari

    return tuple(int(part) for part in napari.__version__.split(".")[:2])
