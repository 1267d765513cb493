import numpy as np
import pytest
import torch

from napari_fcnseg.core import predict as predict_mod
from napari_fcnseg.core.phantoms import generate_volume
from napari_fcnseg.core.predict import predict, predict_iter
from napari_fcnseg.core.progress import Progress


def test_volume_labels_are_uint8_with_input_shape(tiny_net):
    img = np.random.default_rng(0).normal(size=(5, 40, 52)).astype(np.float32)
    res = predict(tiny_net, img)
    assert res.labels.shape == img.shape and res.labels.dtype == np.uint8
    assert res.slices == list(range(5)) and res.probabilities is None


@pytest.mark.parametrize("shape", [(48, 40), (2, 3, 32, 32)])
def test_2d_images_and_leading_time_axes(tiny_net, shape):
    img = np.random.default_rng(1).random(shape).astype(np.float32)
    res = predict(tiny_net, img, probabilities="float32")
    assert res.labels.shape == shape
    assert res.probabilities.shape == (3, *shape) and res.probabilities.dtype == np.float32
    np.testing.assert_allclose(res.probabilities.sum(0), 1.0, atol=1e-4)
    np.testing.assert_array_equal(res.probabilities.argmax(0), res.labels)


def test_slice_wise_result_does_not_depend_on_batching_or_subset(tiny_net):
    img = np.random.default_rng(2).normal(size=(6, 32, 32)).astype(np.float32)
    full = predict(tiny_net, img, batch_size=4).labels
    one = predict(tiny_net, img, batch_size=1).labels
    np.testing.assert_array_equal(full, one)
    sub = predict(tiny_net, img, slices=[1, 4])
    np.testing.assert_array_equal(sub.labels[[1, 4]], full[[1, 4]])
    assert not sub.labels[[0, 2, 3, 5]].any() and sub.slices == [1, 4]


def test_uint8_probabilities_never_float64(tiny_net):
    img = np.random.default_rng(3).random((3, 32, 32))
    res = predict(tiny_net, img, probabilities="uint8")
    assert res.probabilities.dtype == np.uint8
    assert abs(int(res.probabilities.sum(0).astype(int).mean()) - 255) <= 2
    with pytest.raises(ValueError):
        predict(tiny_net, img, probabilities="float64")


def test_tiling_matches_whole_slice_closely(tiny_net):
    img = np.random.default_rng(4).random((1, 150, 170)).astype(np.float32)
    whole = predict(tiny_net, img, probabilities="float32")
    tiled = predict(tiny_net, img, tile_size=64, tile_overlap=16, probabilities="float32")
    assert tiled.labels.shape == img.shape
    # a shallow net's receptive field is small, so tiles agree away from their borders
    assert (tiled.labels == whole.labels).mean() > 0.9


def test_huge_slice_runs_tile_by_tile(tiny_net, monkeypatch):
    seen = []
    real = predict_mod._run_net

    def spy(net, x, multiple):
        seen.append(tuple(x.shape[-2:]))
        return real(net, x, multiple)

    monkeypatch.setattr(predict_mod, "_run_net", spy)
    img = np.zeros((1, 700, 300), np.float32)
    res = predict(tiny_net, img, tile_size=256, tile_overlap=32)
    assert res.labels.shape == img.shape
    assert max(h * w for h, w in seen) <= 256 * 256 and len(seen) >= 4


def test_generator_yields_progress_and_cancel_stops_between_batches(tiny_net):
    img = np.random.default_rng(5).random((8, 32, 32)).astype(np.float32)
    gen = predict_iter(tiny_net, img, batch_size=2)
    first = next(gen)
    assert isinstance(first, Progress) and (first.step, first.total) == (1, 4)
    gen.close()  # cancel: no further batch runs, nothing is returned
    with pytest.raises(StopIteration):
        next(gen)
    records = list(predict_iter(tiny_net, img, batch_size=2))
    assert [r.step for r in records] == [1, 2, 3, 4]


def test_bad_inputs_are_refused(tiny_net):
    with pytest.raises(ValueError):
        predict(tiny_net, np.zeros(5))
    with pytest.raises(ValueError):
        predict(tiny_net, np.zeros((0, 8, 8)))
    with pytest.raises(ValueError, match="slice"):
        predict(tiny_net, np.zeros((3, 8, 8)), slices=[3])


def test_model_in_training_mode_is_not_changed(tiny_net):
    tiny_net.train()
    before = {k: v.clone() for k, v in tiny_net.state_dict().items()}
    predict(tiny_net, np.random.default_rng(6).random((2, 32, 32)))
    assert tiny_net.training
    for k, v in tiny_net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_reduced_precision_runs_the_network_under_autocast_and_keeps_the_labels():
    from napari_fcnseg.core.store import ModelStore

    net = ModelStore().load("bundled").net
    ph = generate_volume("CT", (3, 256, 256), 100_007)  # a held-out seed
    full = predict(net, ph.image, device="cpu", probabilities="uint8")
    half = predict(net, ph.image, device="cpu", probabilities="uint8", precision="bfloat16")
    assert half.labels.dtype == np.uint8 and half.labels.shape == full.labels.shape
    assert (half.labels == full.labels).mean() > 0.98 and (half.labels == 1).any()
    assert not np.array_equal(half.probabilities, full.probabilities)  # it did run in bf16
    with pytest.raises(ValueError, match="precision"):
        predict(net, ph.image, device="cpu", precision="int4")
