import json

import numpy as np
import pytest

from napari_fcnseg.core.review import (
    METADATA_KEY,
    OverwriteUndo,
    ReviewState,
    edited_slices,
    merge_prediction,
    protected_slices,
    slice_count,
    slice_digests,
    slice_index,
    undo_overwrite,
)


def _prediction(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 3, shape).astype(np.uint8)


def test_slice_count_and_index():
    assert slice_count((64, 64)) == 1
    assert slice_count((8, 64, 64)) == 8
    assert slice_count((3, 8, 64, 64)) == 24
    assert slice_index((64, 64), 0) == ()
    assert slice_index((8, 64, 64), 5) == (5,)
    assert slice_index((3, 8, 64, 64), 2 * 8 + 5) == (2, 5)
    with pytest.raises(ValueError):
        slice_count((5,))
    with pytest.raises(IndexError):
        slice_index((8, 64, 64), 8)


def test_slice_index_matches_reshape_order():
    a = np.arange(3 * 4 * 2 * 2).reshape(3, 4, 2, 2)
    flat = a.reshape(-1, 2, 2)
    for k in range(12):
        np.testing.assert_array_equal(a[slice_index(a.shape, k)], flat[k])


def test_digests_change_only_with_content_and_ignore_dtype():
    labels = _prediction((4, 16, 16))
    d = slice_digests(labels)
    assert set(d) == {0, 1, 2, 3}
    assert slice_digests(labels.astype(np.int32)) == d
    assert slice_digests(labels, [2]) == {2: d[2]}
    labels[2, 3, 3] = (labels[2, 3, 3] + 1) % 3
    d2 = slice_digests(labels)
    assert d2[2] != d[2]
    assert {k: d2[k] for k in (0, 1, 3)} == {k: d[k] for k in (0, 1, 3)}


def test_metadata_round_trip_is_json_friendly():
    state = ReviewState("tiny", {0: "aa", 5: "bb"}, {5, 7}, ["background", "organ"])
    md = json.loads(json.dumps(state.to_metadata()))
    back = ReviewState.from_metadata(md)
    assert back == state
    assert ReviewState.from_metadata({METADATA_KEY: md, "other": 1}) == state
    assert ReviewState.from_metadata({}) is None
    assert ReviewState.from_metadata(None) is None
    assert ReviewState.from_metadata({"predicted": {"x": "a"}}) is None
    assert ReviewState.from_metadata({METADATA_KEY: "junk"}) is None


def test_state_of_another_version_forgets_its_digests_but_keeps_reviews():
    md = ReviewState("tiny", {0: "aa", 1: "bb"}, {1}, ["background", "organ"]).to_metadata()
    md["version"] = 1  # digests from an older algorithm
    back = ReviewState.from_metadata(md)
    assert back.predicted == {} and back.reviewed == {1} and back.model == "tiny"
    labels = np.zeros((3, 4, 4), np.uint8)
    labels[0, 1, 1] = 1
    assert protected_slices(labels, back) == [0, 1]  # non-empty or reviewed: never overwritten


def test_digests_handle_empty_wide_and_boolean_slices():
    assert slice_digests(np.zeros((2, 0, 5), np.uint8)) == slice_digests(np.zeros((2, 0, 5), int))
    assert slice_digests(np.zeros((1, 3, 4)))[0] != slice_digests(np.zeros((1, 4, 3)))[0]
    wide = np.full((1, 2, 2), 300, np.int32)
    assert slice_digests(wide) == slice_digests(wide.astype(np.int64))
    assert slice_digests(wide) != slice_digests(wide - 256)
    assert slice_digests(np.ones((1, 2, 2), bool)) == slice_digests(np.ones((1, 2, 2), np.uint8))


def test_mark_reviewed():
    state = ReviewState()
    state.mark_reviewed([1, 2, 3])
    state.mark_reviewed([2], reviewed=False)
    assert state.reviewed == {1, 3}


def test_merge_into_empty_labels_writes_all_and_records_digests():
    labels = np.zeros((4, 16, 16), np.uint8)
    pred = _prediction(labels.shape)
    state = ReviewState(classes=["background", "organ", "lesion"])
    written = merge_prediction(labels, pred, range(4), state, "m1")
    assert written == [0, 1, 2, 3]
    np.testing.assert_array_equal(labels, pred)
    assert state.model == "m1"
    assert state.predicted == slice_digests(labels)
    assert edited_slices(labels, state) == []
    assert protected_slices(labels, state) == []


def test_merge_uses_digests_computed_beforehand():
    pred = _prediction((4, 16, 16))
    digests = slice_digests(pred, [1, 3])  # e.g. made in a worker thread
    state = ReviewState(reviewed={1})
    labels = np.zeros(pred.shape, np.int32)
    written = merge_prediction(labels, pred, [1, 3], state, "m2", overwrite_protected=True,
                               digests=digests)
    assert written == [1, 3] and state.reviewed == set() and state.model == "m2"
    assert state.predicted == digests == slice_digests(labels, [1, 3])
    # they are taken as given, not recomputed
    merge_prediction(labels, pred, [1, 3], state, "m3", overwrite_protected=True,
                     digests={1: "given-1", 3: "given-3"})
    assert state.predicted == {1: "given-1", 3: "given-3"}


def test_edits_and_reviews_are_protected():
    labels = np.zeros((6, 16, 16), np.uint8)
    state = ReviewState()
    merge_prediction(labels, _prediction(labels.shape, 1), range(6), state, "m1")
    labels[1, :4, :4] = 2
    labels[4] = 0
    state.mark_reviewed([3])
    assert edited_slices(labels, state) == [1, 4]
    assert protected_slices(labels, state) == [1, 3, 4]
    assert protected_slices(labels, state, [0, 1, 2]) == [1]
    before = labels.copy()
    new = _prediction(labels.shape, 2)
    written = merge_prediction(labels, new, range(6), state, "m2")
    assert written == [0, 2, 5]
    for k in (1, 3, 4):
        np.testing.assert_array_equal(labels[k], before[k])
    for k in (0, 2, 5):
        np.testing.assert_array_equal(labels[k], new[k])
    assert state.model == "m2"
    assert edited_slices(labels, state) == [1, 4]
    assert state.reviewed == {3}


def test_overwrite_protected_writes_everything_and_clears_review():
    labels = np.zeros((3, 8, 8), np.uint8)
    state = ReviewState()
    merge_prediction(labels, _prediction(labels.shape, 1), range(3), state, "m1")
    labels[0, 0, 0] = 1 if labels[0, 0, 0] != 1 else 2
    state.mark_reviewed([2])
    new = _prediction(labels.shape, 3)
    written = merge_prediction(labels, new, [0, 1, 2], state, "m2", overwrite_protected=True)
    assert written == [0, 1, 2]
    np.testing.assert_array_equal(labels, new)
    assert state.reviewed == set()
    assert protected_slices(labels, state) == []


def test_undo_overwrite_puts_back_the_persons_slices_unless_changed_since():
    labels = np.zeros((4, 8, 8), np.int32)
    state = ReviewState()
    merge_prediction(labels, _prediction(labels.shape, 1), range(4), state, "m1")
    labels[0, 0, 0] = 1 if labels[0, 0, 0] != 1 else 2  # edited
    labels[3, 1, 1] = 1 if labels[3, 1, 1] != 1 else 2  # edited
    state.mark_reviewed([2])  # reviewed as predicted
    mine, before_state = labels.copy(), state.to_metadata()
    undo = OverwriteUndo()
    new = _prediction(labels.shape, 3)
    written = merge_prediction(labels, new, range(4), state, "m2", overwrite_protected=True,
                               undo=undo)
    assert written == [0, 1, 2, 3] and sorted(undo.before) == [0, 2, 3]  # slice 1 was the model's
    assert undo.state == before_state
    labels[3, 2, 2] = 7  # the person paints over the new slice 3 before undoing
    restored, changed = undo_overwrite(labels, state, undo)
    assert restored == [0, 2] and changed == [3]
    np.testing.assert_array_equal(labels[[0, 2]], mine[[0, 2]])
    np.testing.assert_array_equal(labels[1], new[1])  # the model's own slice stays new
    assert labels[3, 2, 2] == 7
    assert state.reviewed == {2}
    assert protected_slices(labels, state) == [0, 2, 3]


def test_no_undo_record_without_overwriting():
    labels = np.zeros((2, 8, 8), np.uint8)
    state = ReviewState()
    merge_prediction(labels, _prediction(labels.shape, 1), range(2), state, "m1")
    state.mark_reviewed([0])
    undo = OverwriteUndo()
    written = merge_prediction(labels, _prediction(labels.shape, 2), range(2), state, "m2",
                               undo=undo)
    assert written == [1] and undo.before == {} and undo.written == {}
    assert undo_overwrite(labels, state, undo) == ([], [])


def test_unpredicted_slices_count_as_edited_only_when_painted():
    labels = np.zeros((4, 8, 8), np.uint8)
    state = ReviewState()
    merge_prediction(labels, _prediction(labels.shape), [0], state, "m")
    assert edited_slices(labels, state) == []
    labels[2, 1, 1] = 1
    assert edited_slices(labels, state) == [2]
    written = merge_prediction(labels, _prediction(labels.shape, 5), range(4), state, "m")
    assert written == [0, 1, 3]
    assert labels[2].sum() == 1


def test_merge_only_touches_requested_slices_4d_and_non_contiguous():
    base = np.zeros((2, 3, 8, 8), np.uint8)
    labels = base.transpose(0, 1, 3, 2)  # a non-contiguous view: writes must reach `base`
    pred = _prediction(labels.shape)
    state = ReviewState()
    written = merge_prediction(labels, pred, [4], state, "m")
    assert written == [4]
    np.testing.assert_array_equal(base[1, 1], pred[1, 1].T)
    assert base.sum() == pred[1, 1].sum()
    assert list(state.predicted) == [4]


def test_merge_2d_and_errors():
    labels = np.zeros((8, 8), np.uint8)
    state = ReviewState()
    assert merge_prediction(labels, np.ones((8, 8), np.uint8), [0], state, "m") == [0]
    assert labels.all()
    with pytest.raises(ValueError, match="shape"):
        merge_prediction(labels, np.ones((4, 4), np.uint8), [0], state, "m")
    with pytest.raises(IndexError):
        merge_prediction(labels, np.ones((8, 8), np.uint8), [1], state, "m")
    with pytest.raises(ValueError, match="cannot hold"):
        merge_prediction(labels, np.full((8, 8), 300, np.int32), [0], state, "m",
                         overwrite_protected=True)


def test_next_to_review_prefers_the_most_uncertain_free_slice():
    from napari_fcnseg.core.review import ReviewState

    state = ReviewState(uncertainty={0: 0.1, 1: 0.9, 2: 0.5, 3: 0.95})
    assert state.next_to_review(5, protected=[3]) == 1
    assert state.next_to_review(5, protected=[1, 3]) == 2
    assert state.next_to_review(5, protected=range(5)) is None
    plain = ReviewState()
    assert plain.next_to_review(5, protected=[1], after=0) == 2
    assert plain.next_to_review(5, protected=[1], after=4) == 0  # wraps around
    back = ReviewState.from_metadata(state.to_metadata())
    assert back.uncertainty == state.uncertainty


def test_slice_uncertainty_is_zero_when_sure_and_high_when_torn():
    import torch

    from napari_fcnseg.core.predict import slice_uncertainty

    sure = torch.zeros(1, 3, 4, 4)
    sure[:, 1] = 1.0  # certain foreground everywhere
    torn = torch.full((1, 3, 4, 4), 1 / 3)
    empty = torch.zeros(1, 3, 4, 4)
    empty[:, 0] = 1.0  # certain background: no region to be unsure about
    scores = slice_uncertainty(torch.cat([sure, torn, empty])).tolist()
    assert scores[0] == pytest.approx(0, abs=1e-5) and scores[1] == pytest.approx(1, abs=1e-5)
    assert scores[2] == 0
