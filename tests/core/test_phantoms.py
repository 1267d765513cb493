import numpy as np
import pytest

from napari_fcnseg.core.phantoms import generate_volume


def test_same_seed_same_volume_other_seed_other_volume():
    a, b = generate_volume("CT", (4, 64, 64), 3), generate_volume("CT", (4, 64, 64), 3)
    c = generate_volume("CT", (4, 64, 64), 4)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)


def test_ct_is_int16_hounsfield_with_expected_tissues():
    ph = generate_volume("CT", (8, 128, 128), 1)
    assert ph.image.dtype == np.int16 and ph.labels.dtype == np.uint8
    assert ph.image.shape == ph.labels.shape == (8, 128, 128)
    assert set(np.unique(ph.labels)) <= {0, 1, 2} and (ph.labels == 1).any()
    corner = ph.image[:, :4, :4]
    assert -1100 < corner.mean() < -900  # air around the body
    organ = ph.image[ph.labels == 1]
    assert 30 < np.median(organ) < 170  # enhancing soft-tissue organ
    assert ph.image.max() > 300  # bone
    assert all(s > 0 for s in ph.spacing)


def test_lesions_lie_inside_the_organ_and_differ_in_contrast():
    seen_hypo = seen_hyper = False
    for seed in range(8):
        ph = generate_volume("CT", (12, 128, 128), seed)
        lesion = ph.labels == 2
        if not lesion.any():
            continue
        organ_med = np.median(ph.image[ph.labels == 1])
        lesion_med = np.median(ph.image[lesion])
        seen_hypo |= lesion_med < organ_med - 15
        seen_hyper |= lesion_med > organ_med + 15
    assert seen_hypo and seen_hyper


def test_mr_is_float_positive_with_same_labels_as_ct_for_a_seed():
    mr, ct = generate_volume("MR", (4, 64, 64), 2), generate_volume("CT", (4, 64, 64), 2)
    assert mr.image.dtype == np.float32 and (mr.image >= 0).all()
    np.testing.assert_array_equal(mr.labels, ct.labels)


def test_unknown_modality_is_refused():
    with pytest.raises(ValueError):
        generate_volume("PET", (2, 32, 32), 0)
