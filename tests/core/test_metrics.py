import numpy as np
import pytest

from napari_fcnseg.core.metrics import dice_per_class, voxel_counts


def test_dice_against_hand_computed_values():
    ref = np.array([[0, 1, 1, 2], [0, 1, 1, 2]])
    pred = np.array([[0, 1, 0, 2], [1, 1, 1, 0]])
    scores = dice_per_class(pred, ref, 3)
    assert scores[1] == pytest.approx(2 * 3 / (4 + 4))
    assert scores[2] == pytest.approx(2 * 1 / (1 + 2))
    assert voxel_counts(pred, ref, 3)[2] == (1, 3, 1, 2)


def test_absent_class_scores_one_and_shapes_must_match():
    assert dice_per_class(np.zeros((3, 3), int), np.zeros((3, 3), int), 3) == {1: 1.0, 2: 1.0}
    with pytest.raises(ValueError):
        dice_per_class(np.zeros((3, 3)), np.zeros((3, 4)))


def test_large_label_values_need_no_memory_sized_by_the_value():
    import tracemalloc

    ref = np.zeros((4, 16, 16), np.uint16)
    ref[1, 2:6, 2:6] = 40000
    pred = ref.copy()
    pred[1, 2, 2] = 0
    tracemalloc.start()
    dice = dice_per_class(pred, ref)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert set(dice) == {40000} and dice[40000] == pytest.approx(2 * 15 / 31)
    assert peak < 50 * 1024**2  # 40000**2 counters would take 12 GiB
    assert voxel_counts(pred, ref)[40000] == (15, 31, 15, 16)
