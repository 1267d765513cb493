"""Compressed DICOM series open with the same voxels as uncompressed ones, or say what is missing.

The compressed copies are made here from an uncompressed series: RLE by pydicom itself, the
JPEG family by imagecodecs (a different codec implementation from the decoders pydicom uses:
GDCM, Pillow, pyjpegls), so a round trip checks both ends.
"""

from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import (
    HTJ2KLossless,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from napari_fcnseg.io import ImageReadError, read_volume


def _ct(dtype=np.int16, low=-1024, high=2000, n=4, shape=(40, 32), seed=0) -> np.ndarray:
    """Smooth CT-like stored values with noise (codecs see realistic, not constant, data)."""
    k, r, c = np.meshgrid(np.arange(n), np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    smooth = low + (high - low) * (0.5 + 0.25 * np.sin(r / 5 + k) * np.cos(c / 7))
    noise = np.random.default_rng(seed).integers(-20, 20, smooth.shape)
    return np.clip(smooth + noise, low, high).astype(dtype)


def _bits(encode):
    """Encode the stored bit pattern: DICOM compresses signed samples as unsigned ones."""
    return lambda a: encode(a.view(f"u{a.dtype.itemsize}"))


# transfer syntax -> frame encoder (None: pydicom's own encoder)
LOSSLESS = {
    "RLE Lossless": (RLELossless, None),
    "JPEG Lossless SV1": (
        JPEGLosslessSV1,
        _bits(lambda a: imagecodecs.jpeg8_encode(a, lossless=True, predictor=1,
                                                 bitspersample=8 * a.itemsize)),
    ),
    "JPEG-LS Lossless": (JPEGLSLossless, _bits(lambda a: imagecodecs.jpegls_encode(a, level=0))),
    "JPEG 2000 Lossless": (
        JPEG2000Lossless,
        lambda a: imagecodecs.jpeg2k_encode(a, level=0, codecformat="j2k", reversible=True),
    ),
}


def compress(src: Path, dst: Path, syntax: str, encode=None) -> list[Path]:
    """Copy every file of the series in ``src`` to ``dst`` with its pixels in ``syntax``."""
    dst.mkdir(parents=True)
    out = []
    for path in sorted(src.iterdir()):
        ds = pydicom.dcmread(path)
        if encode is None:
            ds.compress(syntax)
        else:
            ds.PixelData = encapsulate([encode(ds.pixel_array)])
            ds["PixelData"].VR = "OB"
            ds.file_meta.TransferSyntaxUID = syntax
            if syntax == JPEGBaseline8Bit:
                ds.LossyImageCompression = "01"
        ds.save_as(dst / path.name, enforce_file_format=True)
        out.append(dst / path.name)
    return out


@pytest.mark.parametrize("signed", [True, False], ids=["int16", "uint16"])
@pytest.mark.parametrize("name", list(LOSSLESS))
def test_lossless_series_open_with_the_same_voxels(tmp_path, synth, name, signed):
    syntax, encode = LOSSLESS[name]
    raw = _ct() if signed else _ct(np.uint16, 0, 4095)
    synth.make_series(tmp_path / "plain", raw, seed=5)
    files = compress(tmp_path / "plain", tmp_path / name, syntax, encode)
    assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == syntax
    plain, packed = read_volume(tmp_path / "plain"), read_volume(tmp_path / name)
    assert packed.data.dtype == plain.data.dtype
    np.testing.assert_array_equal(packed.data, plain.data)
    assert packed.spacing == plain.spacing and packed.origin == plain.origin
    # the same voxels whichever installed decoder pydicom picks
    for plugin in get_decoder(syntax).available_plugins:
        np.testing.assert_array_equal(
            pixel_array(files[0], decoding_plugin=plugin),
            pydicom.dcmread(tmp_path / "plain" / files[0].name).pixel_array,
            err_msg=plugin,
        )


def test_jpeg_baseline_series_opens_close_to_the_original(tmp_path, synth):
    raw = _ct(np.uint8, 0, 255)
    synth.make_series(tmp_path / "plain", raw, intercept=0.0)
    compress(tmp_path / "plain", tmp_path / "jpeg", JPEGBaseline8Bit,
             lambda a: imagecodecs.jpeg8_encode(a, level=95))
    plain, lossy = read_volume(tmp_path / "plain"), read_volume(tmp_path / "jpeg")
    assert lossy.data.shape == plain.data.shape and lossy.data.dtype == plain.data.dtype
    error = np.abs(lossy.data.astype(float) - plain.data)
    assert error.mean() < 3 and error.max() < 20  # lossy, but the same image


def test_a_syntax_without_installed_decoder_names_the_package(tmp_path, synth):
    if get_decoder(HTJ2KLossless).is_available:
        pytest.skip("an HTJ2K decoder is installed here")
    synth.make_series(tmp_path / "plain", _ct(np.uint16, 0, 4095))
    compress(tmp_path / "plain", tmp_path / "htj2k", HTJ2KLossless, imagecodecs.htj2k_encode)
    with pytest.raises(ImageReadError) as info:
        read_volume(tmp_path / "htj2k")
    message = str(info.value)
    assert "High-Throughput JPEG 2000" in message and "no installed decoder" in message
    assert "pip install pylibjpeg pylibjpeg-openjpeg" in message
    assert "\n" not in message and "Unable to" not in message  # one plain line, ours


def test_12_bit_jpeg_opens_or_says_which_decoder_would(tmp_path, synth):
    raw = _ct(np.uint16, 0, 4095)
    _, files = synth.make_series(tmp_path / "plain", raw, BitsStored=12, HighBit=11)
    compress(tmp_path / "plain", tmp_path / "jpeg12", JPEGExtended12Bit,
             lambda a: imagecodecs.jpeg8_encode(a, level=95, bitspersample=12))
    if "pylibjpeg" in get_decoder(JPEGExtended12Bit).available_plugins:
        error = np.abs(read_volume(tmp_path / "jpeg12").data - read_volume(tmp_path / "plain").data)
        assert error.mean() < 10
        return
    with pytest.raises(ImageReadError) as info:  # GDCM and Pillow decode 8-bit JPEG only
        read_volume(tmp_path / "jpeg12")
    message = str(info.value)
    assert "JPEG Extended" in message and "12 bits stored" in message and "\n" not in message
    assert "pip install pylibjpeg pylibjpeg-libjpeg" in message


def test_a_decoder_missing_its_package_is_named_as_pip_installs_it(tmp_path, synth,
                                                                   monkeypatch):
    synth.make_series(tmp_path / "plain", _ct())
    files = compress(tmp_path / "plain", tmp_path / "ljpeg", *LOSSLESS["JPEG Lossless SV1"])
    decoder = get_decoder(JPEGLosslessSV1)
    monkeypatch.setattr(decoder, "_available", {})  # as on a machine without GDCM
    monkeypatch.setattr(decoder, "_unavailable", {"gdcm": ("gdcm>=3.0.10",)})
    with pytest.raises(ImageReadError, match="JPEG Lossless.*pip install python-gdcm") as info:
        read_volume(tmp_path / "ljpeg")
    assert any(f.name in str(info.value) for f in files)  # names the file it could not read


def test_a_syntax_pydicom_does_not_know_is_refused_plainly(tmp_path, synth):
    _, files = synth.make_series(tmp_path / "jxl", _ct(n=2))
    for path in files:  # pydicom writes no syntax it does not know: patch a same-length UID
        ds = pydicom.dcmread(path)
        ds.PixelData = encapsulate([b"\xff\x0a" + bytes(30)])  # a JPEG XL codestream's marker
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = HTJ2KLossless  # 1.2.840.10008.1.2.4.201
        ds.save_as(path, enforce_file_format=True)
        data = path.read_bytes()
        assert data.count(HTJ2KLossless.encode()) == 1
        path.write_bytes(data.replace(HTJ2KLossless.encode(), b"1.2.840.10008.1.2.4.110"))
    with pytest.raises(ImageReadError, match="1.2.840.10008.1.2.4.110 .JPEG XL Lossless."):
        read_volume(tmp_path / "jxl")
