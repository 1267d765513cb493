"""Segmenting images read on demand (dask, zarr, any array-like) without loading them whole."""

import dask.array as da
import numpy as np
import pytest
import torch

from napari_fcnseg.core.arrays import is_lazy, read_slice, sample_values, write_slices
from napari_fcnseg.core.nets import NetworkConfig, build_network
from napari_fcnseg.core.normalize import fit_normalizer
from napari_fcnseg.core.phantoms import generate_volume
from napari_fcnseg.core.predict import predict


class CountingArray:
    """An array-like that records how many voxels every read returned."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.size = data.size
        self.reads: list[int] = []

    def __getitem__(self, index):
        part = self._data[index]
        self.reads.append(np.asarray(part).size)
        return part


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_network(NetworkConfig(base=4, depth=2)).eval()


@pytest.fixture(scope="module")
def ct():
    return generate_volume("CT", (6, 64, 64), 11).image


def test_array_likes_are_lazy_numpy_is_not(ct):
    assert not is_lazy(ct) and is_lazy(da.from_array(ct)) and is_lazy(CountingArray(ct))


def test_a_dask_volume_segments_exactly_like_the_same_numpy_volume(net, ct):
    expected = predict(net, ct, device="cpu").labels
    lazy = da.from_array(ct, chunks=(1, 64, 64))
    got = predict(net, lazy, device="cpu").labels
    assert isinstance(got, np.ndarray) and np.array_equal(got, expected)


def test_labels_are_written_into_the_given_output_array(net, ct):
    norm = fit_normalizer(ct, "MR")  # the same mapping for both runs
    expected = predict(net, ct, normalizer=norm, device="cpu").labels
    out = np.full(ct.shape, 7, np.uint8)
    result = predict(net, CountingArray(ct), normalizer=norm, slices=[1, 2, 4], device="cpu",
                     out=out)
    assert result.labels is out
    assert np.array_equal(out[[1, 2, 4]], expected[[1, 2, 4]])
    assert (out[[0, 3, 5]] == 7).all()  # slices not asked for are left as they were


def test_no_read_of_a_lazy_image_is_more_than_one_slice(net, ct):
    lazy = CountingArray(ct)
    predict(net, lazy, device="cpu")
    assert lazy.reads and max(lazy.reads) == 64 * 64


def test_a_lazy_fit_reads_a_few_slices_and_agrees_with_the_full_fit():
    mr = generate_volume("MR", (120, 48, 48), 3).image
    lazy = CountingArray(mr)
    values = sample_values(lazy)
    assert len(lazy.reads) <= 48 and values.dtype == np.float64
    full, sampled = fit_normalizer(mr, "MR"), fit_normalizer(lazy, "MR")
    span = full.high - full.low
    assert abs(sampled.low - full.low) < 0.05 * span and abs(sampled.high - full.high) < 0.05 * span


def test_leading_axes_and_2d_images_are_read_and_written_by_flat_slice():
    stack = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert np.array_equal(read_slice(stack, 4), stack[1, 1])
    image = np.arange(20).reshape(4, 5)
    assert np.array_equal(read_slice(da.from_array(image), 0), image)
    out = np.zeros((2, 3, 4, 5), int)
    write_slices(out, 2, np.ones((2, 4, 5), int))
    assert out[0, 2].all() and out[1, 0].all() and out.sum() == 40


def test_lazy_images_refuse_probabilities_and_outputs_must_fit(net, ct):
    with pytest.raises(ValueError, match="in memory"):
        predict(net, da.from_array(ct), probabilities="uint8", device="cpu")
    with pytest.raises(ValueError, match="uint8 array of the image's shape"):
        predict(net, ct, out=np.zeros((6, 64, 63), np.uint8), device="cpu")


def test_volumes_and_edits_of_lazy_labels_are_counted_one_slice_at_a_time():
    from napari_fcnseg.core.metrics import class_volumes
    from napari_fcnseg.core.review import ReviewState, edited_slices, slice_digests

    labels = np.zeros((5, 16, 16), np.uint8)
    labels[1, 2:6, 2:6] = 1
    labels[3, :4, :4] = 2
    labels[3, 10:12, 10:12] = 2
    names = ["background", "organ", "lesion", "cyst"]
    lazy = CountingArray(labels)
    rows = class_volumes(lazy, (2.0, 1.0, 1.0), names)
    eager = class_volumes(labels, (2.0, 1.0, 1.0), names)
    assert [(r["value"], r["name"], r["voxels"], r["ml"]) for r in rows] == [
        (r["value"], r["name"], r["voxels"], r["ml"]) for r in eager]
    assert [r["voxels"] for r in rows] == [16, 20, 0]
    assert all(r["components"] is None for r in rows) and eager[1]["components"] == 2
    assert max(lazy.reads) == 16 * 16  # never more than one slice in memory

    lazy.reads.clear()
    assert edited_slices(lazy, ReviewState()) == [1, 3]
    state = ReviewState()
    state.record_prediction(slice_digests(labels), "bundled")
    labels[4, 0, 0] = 1
    assert edited_slices(lazy, state) == [4]
    assert max(lazy.reads) == 16 * 16


def test_finetuning_reads_only_the_annotated_slices_of_a_lazy_image(net, ct):
    from napari_fcnseg.core.finetune import FinetuneSettings, finetune

    ph = generate_volume("CT", (200, 32, 32), 11)
    labels = np.zeros_like(ph.labels)
    labels[100] = ph.labels[100]
    settings = FinetuneSettings(steps=3, crop=32, holdout_folds=0)
    lazy = CountingArray(ph.image)
    from_disk = finetune(net, lazy, labels, slices=[100], settings=settings, device="cpu")
    in_memory = finetune(net, ph.image, labels, slices=[100], settings=settings, device="cpu")
    assert max(lazy.reads) == 32 * 32  # slice by slice
    # the intensity fit samples at most 48 slices (twice: CT check, then the fit), training
    # reads the annotated slice and its two neighbours: never the whole volume
    assert len(lazy.reads) <= 2 * 48 + 3 < 200
    for (name, a), b in zip(from_disk.net.state_dict().items(),
                            in_memory.net.state_dict().values(), strict=True):
        assert torch.allclose(a, b), name  # CT: the same fixed window, the same training
