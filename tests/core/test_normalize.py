import warnings

import numpy as np
import pytest

from napari_fcnseg.core.normalize import (
    NonFiniteWarning,
    fit_normalizer,
    looks_like_ct,
    normalize,
)
from napari_fcnseg.core.phantoms import generate_volume


@pytest.fixture(scope="module")
def mr():
    return generate_volume("MR", (4, 96, 96), 0).image


def test_same_anatomy_same_input_whatever_the_dtype(mr):
    ref = normalize(mr)
    scaled = mr / mr.max()
    as_u16 = np.rint(scaled * 60000).astype(np.uint16)
    as_u8 = np.rint(scaled * 255).astype(np.uint8)
    as_f64 = scaled.astype(np.float64) * 17.0 + 3.0
    for other, tol in [(as_u16, 2e-3), (as_f64, 1e-5), (as_u8, 2.5e-2)]:
        out = normalize(other)
        assert out.dtype == np.float32
        assert np.abs(out - ref).mean() < tol


def test_ct_detected_and_windowed_in_hu():
    ct = generate_volume("CT", (4, 96, 96), 0).image
    assert looks_like_ct(ct) and looks_like_ct(ct.astype(np.float32))
    n = fit_normalizer(ct)
    assert n.modality == "CT" and (n.low, n.high) == (-250.0, 350.0)
    np.testing.assert_allclose(normalize(ct), normalize(ct.astype(np.float64)), atol=1e-6)
    # same HU -> same input, whatever the rest of the scan holds
    other = ct.copy()
    other[0, :10, :10] = 3000
    np.testing.assert_array_equal(normalize(other)[1:], normalize(ct)[1:])


def test_unsigned_data_is_not_ct_but_can_be_declared():
    img = np.arange(1000, dtype=np.uint16).reshape(10, 100)
    assert not looks_like_ct(img)
    assert fit_normalizer(img, "CT").modality == "CT"


def test_constant_image_gives_constant_input_without_error():
    for img in (np.zeros((8, 8), np.uint8), np.full((3, 8, 8), 7.5, np.float32)):
        out = normalize(img)
        assert np.isfinite(out).all() and out.min() == out.max()


def test_nan_and_inf_are_replaced_with_a_warning(mr):
    img = mr.copy()
    img[0, 0, :5] = np.nan
    img[1, 2, 3] = np.inf
    with pytest.warns(NonFiniteWarning):
        out = normalize(img)
    assert np.isfinite(out).all() and out[0, 0, 0] == 0.0


def test_bad_images_are_refused_in_plain_words():
    with pytest.raises(ValueError, match="empty"):
        normalize(np.zeros((0, 5)))
    with pytest.raises(ValueError, match="no finite"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            normalize(np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="dtype"):
        normalize(np.zeros((4, 4), complex))
    with pytest.raises(ValueError, match="modality"):
        fit_normalizer(np.zeros((4, 4)), "PET")


@pytest.mark.parametrize("image", [
    np.full((3, 8, 8), 1e20, np.float32),
    np.full((3, 8, 8), 2**64 - 1, np.uint64),
    (np.arange(3 * 8 * 8, dtype=np.uint64).reshape(3, 8, 8) + np.uint64(2**64 - 1000)),
    np.full((3, 8, 8), -3e38, np.float32),
])
def test_any_finite_range_normalises_without_dividing_by_zero(image):
    out = fit_normalizer(image)(image)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1
    if np.unique(image.astype(np.float64)).size > 1:  # as far as float64 tells them apart
        assert out.max() > out.min()
