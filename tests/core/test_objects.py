"""Keeping only the predicted objects that touch the reviewed slices."""

import numpy as np
import pytest

from napari_fcnseg.core.objects import keep_anchored_objects


def _volume() -> np.ndarray:
    """A tumour (2) through slices 3-7, a far false positive (2) on 1-2, an organ (1) on 0-9."""
    v = np.zeros((10, 32, 32), np.uint8)
    v[:, 2:8, 2:8] = 1
    v[3:8, 15:20, 15:20] = 2
    v[1:3, 25:28, 25:28] = 2
    return v


def test_objects_away_from_reviewed_slices_are_removed_and_the_anchored_one_kept():
    v = _volume()
    before = v.copy()
    report = keep_anchored_objects(v, anchor_slices=[4, 8], classes=[2])
    assert (v[3:8, 15:20, 15:20] == 2).all()  # the tumour, anchored on slice 4, stays
    assert not (v[1:3] == 2).any()  # the far spot is gone, set to background
    assert (v == 1).sum() == (before == 1).sum()  # classes not asked for are untouched
    assert report.removed == {2: 18} and report.objects_removed == {2: 1}
    assert report.changed_slices == [1, 2] and report.unanchored == []
    assert "1 class 2 object(s) (18 voxels)" in report.describe()


def test_reviewed_slices_are_never_changed_even_with_an_unanchored_spot_on_them():
    v = _volume()
    v[8, 28:30, 0:2] = 2  # an isolated spot on a reviewed slice: the person's own label
    report = keep_anchored_objects(v, anchor_slices=[4, 8], classes=[2])
    assert (v[8, 28:30, 0:2] == 2).all()
    assert 8 not in report.changed_slices


def test_an_object_shifted_diagonally_between_thick_slices_still_touches():
    v = np.zeros((4, 16, 16), np.uint8)
    v[1, 4:6, 4:6] = 2
    v[2, 6:8, 6:8] = 2  # touches slice 1 only at a corner
    keep_anchored_objects(v, anchor_slices=[1], classes=[2])
    assert (v[2, 6:8, 6:8] == 2).all()


def test_a_class_absent_from_the_reviewed_slices_is_left_as_predicted():
    v = _volume()
    before = v.copy()
    report = keep_anchored_objects(v, anchor_slices=[0], classes=[2])  # slice 0: no tumour
    np.testing.assert_array_equal(v, before)
    assert report.unanchored == [2]
    assert "left as predicted" in report.describe(["background", "organ", "lesion"])
    assert "lesion" in report.describe(["background", "organ", "lesion"])


def test_time_points_are_separate_volumes():
    v = np.stack([_volume(), _volume()])  # (T, Z, Y, X); slice k = t * 10 + z
    report = keep_anchored_objects(v, anchor_slices=[4], classes=[2])  # reviews t = 0 only
    assert not (v[0, 1:3] == 2).any()
    np.testing.assert_array_equal(v[1], _volume())  # t = 1 has no anchor: left as predicted
    assert report.changed_slices == [1, 2]


def test_non_contiguous_labels_are_changed_in_place_too():
    base = np.zeros((32, 32, 10), np.uint8)
    v = base.transpose(2, 0, 1)  # a (10, 32, 32) view that reshape must copy
    v[...] = _volume()
    keep_anchored_objects(v, anchor_slices=[4], classes=[2])
    assert not (base.transpose(2, 0, 1)[1:3] == 2).any()


@pytest.mark.parametrize("labels, message", [
    (np.zeros((8, 8), np.uint8), "3D"),
    (np.zeros((2, 8, 8), np.float32), "integers"),
])
def test_unsuitable_labels_are_refused_in_plain_words(labels, message):
    with pytest.raises(ValueError, match=message):
        keep_anchored_objects(labels, [0], [1])


def test_a_prediction_is_traced_through_the_slices_already_there_and_only_its_own_change():
    from napari_fcnseg.core.objects import anchor_prediction

    truth = _volume()
    labels = np.zeros_like(truth)
    labels[4] = truth[4]  # the person's reviewed slice
    labels[5:8] = truth[5:8]  # an earlier prediction, not part of this run
    labels[9, 0:2, 30:32] = 2  # an earlier stray spot: this run does not touch slice 9
    prediction = truth.copy()
    prediction[4] = 0  # whatever the network says on the reviewed slice is not merged
    filtered, report = anchor_prediction(labels, prediction, predicted=[0, 1, 2, 3, 4],
                                         reviewed=[4], classes=[2])
    assert (filtered[3, 15:20, 15:20] == 2).all()  # touches the reviewed tumour on slice 4
    assert not (filtered[1:3] == 2).any()
    np.testing.assert_array_equal(filtered[4], truth[4])
    assert (filtered[9, 0:2, 30:32] == 2).all()
    assert report.changed_slices == [1, 2]
    assert (labels[9, 0:2, 30:32] == 2).all() and not labels[:4].any()  # input not modified
