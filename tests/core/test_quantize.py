import warnings

import numpy as np
import pytest
import torch
from torch import nn

from napari_fcnseg.core.metrics import dice_per_class
from napari_fcnseg.core.nets import NetworkConfig, build_network, pad_to_multiple
from napari_fcnseg.core.normalize import fit_normalizer
from napari_fcnseg.core.phantoms import generate_volume
from napari_fcnseg.core.predict import predict, prepare_for_inference
from napari_fcnseg.core.quantize import (
    PixelShuffleUp,
    QuantizedNet,
    calibration_batches,
    first_convolution,
    quantize_for_image,
    quantize_network,
    replace_transposed_convs,
)
from napari_fcnseg.core.slices import stack_slices
from napari_fcnseg.core.store import ModelStore

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::UserWarning")


@pytest.fixture(scope="module")
def bundled():
    return ModelStore().load("bundled").net.eval()


@pytest.fixture(scope="module")
def crop():
    """A 4 x 96 x 96 CT-like crop around the organ of a held-out generated volume."""
    ph = generate_volume("CT", (4, 256, 256), 100_902)
    _, yc, xc = np.argwhere(ph.labels == 1).mean(0).astype(int)
    y0, x0 = int(np.clip(yc - 48, 0, 160)), int(np.clip(xc - 48, 0, 160))
    return ph.image[:, y0:y0 + 96, x0:x0 + 96], ph.labels[:, y0:y0 + 96, x0:x0 + 96]


@pytest.fixture(scope="module")
def quantized(bundled, crop):
    return quantize_for_image(bundled, crop[0], count=3)


@pytest.mark.parametrize("cin,cout", [(8, 4), (4, 4), (4, 8)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pixel_shuffle_up_equals_the_transposed_convolution(cin, cout, channels_last):
    torch.manual_seed(0)
    transposed = nn.ConvTranspose2d(cin, cout, 2, stride=2).eval()
    x = torch.randn(2, cin, 5, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    up = PixelShuffleUp(transposed).eval()
    with torch.no_grad():
        expected, got = transposed(x), up(x)
    assert got.shape == expected.shape == (2, cout, 10, 14)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    if channels_last:
        assert got.is_contiguous(memory_format=torch.channels_last)


def test_only_2x2_stride_2_transposed_convolutions_are_rewritten():
    with pytest.raises(ValueError):
        PixelShuffleUp(nn.ConvTranspose2d(4, 4, 3, stride=2))
    net = nn.Sequential(nn.ConvTranspose2d(4, 4, 2, stride=2), nn.ConvTranspose2d(4, 4, 3))
    assert replace_transposed_convs(net) == 1
    assert isinstance(net[0], PixelShuffleUp) and isinstance(net[1], nn.ConvTranspose2d)


def test_calibration_batches_are_the_input_predict_builds(bundled):
    ph = generate_volume("MR", (3, 50, 70), 100_903)
    batches = list(calibration_batches(bundled, ph.image, slices=[0, 2], batch_size=2))
    assert len(batches) == 1
    x = batches[0]
    assert x.dtype == torch.float32 and x.shape == (2, 3, 64, 96)
    assert x.is_contiguous(memory_format=torch.channels_last)
    expected = stack_slices(fit_normalizer(ph.image)(ph.image), [0, 2], 1)
    padded, _ = pad_to_multiple(torch.from_numpy(expected), bundled.multiple)
    torch.testing.assert_close(x, padded)
    assert len(list(calibration_batches(bundled, ph.image[0], count=5))) == 1  # a 2D image
    with pytest.raises(ValueError):
        next(calibration_batches(bundled, ph.image, slices=[3]))


def test_quantized_network_shape_and_attributes(bundled, quantized):
    assert isinstance(quantized, QuantizedNet) and not quantized.training
    assert quantized.config == bundled.config and quantized.multiple == bundled.multiple
    modules = list(quantized.modules())
    assert any(isinstance(m, torch.ao.nn.quantized.Conv2d) for m in modules)
    assert not any(isinstance(m, nn.ConvTranspose2d | torch.ao.nn.quantized.ConvTranspose2d)
                   for m in modules)
    x = torch.rand(2, 3, 64, 96)
    with torch.inference_mode():
        logits = quantized(x)
    assert logits.dtype == torch.float32 and logits.shape == (2, 3, 64, 96)
    assert torch.isfinite(logits).all()


def test_the_source_network_is_left_unchanged(crop):
    net = ModelStore().load("bundled").net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    quantize_for_image(net, crop[0], count=1)
    assert any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())
    after = net.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_int8_agrees_with_fp32_on_a_generated_volume(bundled, crop, quantized):
    image, _ = crop
    fp32 = predict(bundled, image).labels
    int8 = predict(quantized, image, device="cpu").labels
    assert int8.shape == image.shape and int8.dtype == np.uint8
    # fp32 finds both classes here; int8 must too (a broken int8 net predicts one class)
    assert set(np.unique(fp32)) == {0, 1, 2}
    assert set(np.unique(int8)) == {0, 1, 2}
    agreement = dice_per_class(int8, fp32, 3)
    assert agreement[1] > 0.97  # measured 0.998; the 2x2 int8 ConvTranspose kernel gave 0
    assert agreement[2] > 0.9  # measured 0.98
    assert (int8 == fp32).mean() > 0.98


def test_quantized_logits_track_fp32_logits(bundled, crop, quantized):
    x = next(calibration_batches(bundled, crop[0], slices=[1]))
    with torch.inference_mode():
        ref = prepare_for_inference(bundled, torch.device("cpu"))(x)
        got = quantized(x)
    err = (got - ref).abs().mean() / ref.abs().mean()
    assert err < 0.1  # measured about 0.01; a wrong kernel gives order 1


def test_plain_fcn_quantizes():
    torch.manual_seed(0)
    net = build_network(NetworkConfig(arch="fcn", in_channels=3)).eval()
    assert first_convolution(net) == "encoder.0"
    calibration = [torch.rand(1, 3, 32, 32) for _ in range(2)]
    q = quantize_network(net, calibration, observer="histogram", reduce_range=True)
    with torch.inference_mode():
        ref, got = net(calibration[0]), q(calibration[0])
    assert got.shape == ref.shape == (1, 3, 32, 32)
    assert (got - ref).abs().mean() / ref.abs().mean() < 0.1


def test_quantize_network_rejects_bad_arguments(bundled):
    with pytest.raises(ValueError, match="calibration"):
        quantize_network(bundled, [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="observer"):
            quantize_network(bundled, [torch.rand(1, 3, 32, 32)], observer="mean")
