"""TIFF reading and writing, spacing metadata, dispatch, atomic writes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile

import napari_fcnseg.io.tiff as tiff_module
from napari_fcnseg.io import (
    SUPPORTED_SUFFIXES,
    ImageReadError,
    ImageWriteError,
    Volume,
    is_supported,
    read_volume,
    write_image,
    write_labels,
)


def _stack(dtype=np.uint16, shape=(4, 6, 5)) -> np.ndarray:
    return (np.arange(np.prod(shape)) % 250).reshape(shape).astype(dtype)


def test_plain_2d_and_3d_default_to_unit_spacing(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", _stack(shape=(6, 5)), photometric="minisblack")
    tifffile.imwrite(tmp_path / "b.tiff", _stack(), photometric="minisblack")
    a, b = read_volume(tmp_path / "a.tif"), read_volume(tmp_path / "b.tiff")
    np.testing.assert_array_equal(a.data, _stack(shape=(6, 5)))
    np.testing.assert_array_equal(b.data, _stack())
    assert (a.spacing, b.spacing) == ((1.0, 1.0), (1.0, 1.0, 1.0))
    assert a.format == b.format == "tiff" and b.data.dtype == np.uint16


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_write_image_is_imagej_and_keeps_spacing(tmp_path, dtype):
    data = _stack(dtype)
    out = write_image(tmp_path / "img.tif", data, spacing=(2.5, 0.7, 0.3))
    with tifffile.TiffFile(out) as tf:
        assert tf.is_imagej and tf.imagej_metadata["unit"] == "mm"
    vol = read_volume(out)
    np.testing.assert_array_equal(vol.data, data)
    assert vol.data.dtype == dtype
    np.testing.assert_allclose(vol.spacing, (2.5, 0.7, 0.3), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.uint32])
def test_other_dtypes_go_to_ome_tiff_without_loss(tmp_path, dtype):
    data = _stack(dtype) * 1000 + 7
    out = write_image(tmp_path / "img.tiff", data, spacing=(3.0, 0.5, 0.25))
    with tifffile.TiffFile(out) as tf:
        assert tf.is_ome
    vol = read_volume(out)
    np.testing.assert_array_equal(vol.data, data)
    assert vol.data.dtype == dtype
    np.testing.assert_allclose(vol.spacing, (3.0, 0.5, 0.25), rtol=1e-9)


def test_bool_and_2d_images(tmp_path):
    mask = _stack(shape=(6, 5)) > 100
    vol = read_volume(write_image(tmp_path / "mask.tif", mask, spacing=(0.4, 0.6)))
    np.testing.assert_array_equal(vol.data, mask.astype(np.uint8))
    np.testing.assert_allclose(vol.spacing, (0.4, 0.6), rtol=1e-6)


def test_imagej_micron_unit_is_converted_to_mm(tmp_path):
    tifffile.imwrite(
        tmp_path / "um.tif",
        _stack(),
        imagej=True,
        photometric="minisblack",
        resolution=(1 / 0.5, 1 / 0.25),
        metadata={"spacing": 2.0, "unit": "micron", "axes": "ZYX"},
    )
    np.testing.assert_allclose(read_volume(tmp_path / "um.tif").spacing, (2e-3, 2.5e-4, 5e-4))


def test_ome_physical_size_default_unit_is_micrometre(tmp_path):
    tifffile.imwrite(
        tmp_path / "ome.ome.tif",
        _stack(),
        ome=True,
        photometric="minisblack",
        metadata={"axes": "ZYX", "PhysicalSizeX": 4.0, "PhysicalSizeY": 2.0, "PhysicalSizeZ": 10.0},
    )
    np.testing.assert_allclose(read_volume(tmp_path / "ome.ome.tif").spacing, (0.01, 0.002, 0.004))


def test_singleton_axes_are_dropped_but_not_thin_images(tmp_path):
    data = np.arange(15, dtype=np.uint8).reshape(1, 3, 1, 1, 5)  # ImageJ TZCYX, one row high
    tifffile.imwrite(tmp_path / "thin.tif", data, imagej=True)
    vol = read_volume(tmp_path / "thin.tif")
    np.testing.assert_array_equal(vol.data, data.reshape(3, 1, 5))


@pytest.mark.parametrize(
    ("data", "kwargs"),
    [
        (np.zeros((6, 5, 3), np.uint8), {"photometric": "rgb"}),
        (np.zeros((6, 5, 4), np.uint8), {"photometric": "rgb", "extrasamples": ["unassalpha"]}),
        (np.zeros((3, 6, 5), np.uint8), {}),  # tifffile stores a leading 3 as planar RGB
    ],
)
def test_colour_tiff_is_refused(tmp_path, data, kwargs):
    tifffile.imwrite(tmp_path / "photo.tif", data, **kwargs)
    with pytest.raises(ImageReadError, match="photo.tif.*colour images"):
        read_volume(tmp_path / "photo.tif")


def test_multichannel_and_4d_are_refused(tmp_path):
    tifffile.imwrite(
        tmp_path / "chan.tif", np.zeros((4, 2, 6, 5), np.uint8), imagej=True,
        metadata={"axes": "ZCYX"},
    )  # fmt: skip
    tifffile.imwrite(
        tmp_path / "time.tif", np.zeros((2, 4, 6, 5), np.uint8), imagej=True,
        metadata={"axes": "TZYX"},
    )  # fmt: skip
    with pytest.raises(ImageReadError, match="chan.tif.*multi-channel"):
        read_volume(tmp_path / "chan.tif")
    with pytest.raises(ImageReadError, match="time.tif.*2D image or a 3D stack"):
        read_volume(tmp_path / "time.tif")


def test_write_labels_tiff_records_the_spacing_of_like(tmp_path):
    like = Volume(data=_stack(np.int16), spacing=(3.0, 0.75, 0.5), path=tmp_path, format="dicom")
    labels = (like.data > 60).astype(np.int64) * 2
    out = write_labels(tmp_path / "labels.tif", labels, like=like)
    back = read_volume(out)
    assert back.data.dtype == np.uint8
    np.testing.assert_array_equal(back.data, labels)
    np.testing.assert_allclose(back.spacing, like.spacing, rtol=1e-6)
    big = write_labels(tmp_path / "big.tif", labels * 200, like=like)
    assert read_volume(big).data.dtype == np.uint16


def test_write_errors(tmp_path):
    with pytest.raises(ImageWriteError, match="missing.*does not exist"):
        write_image(tmp_path / "missing" / "x.tif", _stack())
    with pytest.raises(ImageWriteError, match="x.png"):
        write_image(tmp_path / "x.png", _stack())
    with pytest.raises(ImageWriteError, match="x.tif.*spacing"):
        write_image(tmp_path / "x.tif", _stack(), spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ImageWriteError, match="x.tif.*2D or 3D"):
        write_image(tmp_path / "x.tif", np.zeros((2, 2, 2, 2)))
    with pytest.raises(ImageWriteError, match="labels.mha"):
        write_labels(tmp_path / "labels.mha", np.zeros((2, 2), np.uint8))
    (tmp_path / "dir.tif").mkdir()
    with pytest.raises(ImageWriteError, match="dir.tif.*folder"):
        write_image(tmp_path / "dir.tif", _stack())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.tif"]


def test_failed_write_leaves_no_temp_and_keeps_the_old_file(tmp_path, monkeypatch):
    dest = write_image(tmp_path / "keep.tif", _stack())
    before = dest.read_bytes()

    def broken(path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"II*\x00partial")
        raise OSError("disk full")

    monkeypatch.setattr(tiff_module.tifffile, "imwrite", broken)
    with pytest.raises(ImageWriteError, match="keep.tif.*disk full"):
        write_image(dest, _stack(np.uint8))
    with pytest.raises(ImageWriteError, match="new.tif"):
        write_labels(tmp_path / "new.tif", np.ones((3, 3), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["keep.tif"]
    assert dest.read_bytes() == before


def test_interrupted_write_is_cleaned_up_too(tmp_path, monkeypatch):
    def interrupted(path, *args, **kwargs):
        open(path, "wb").close()
        raise KeyboardInterrupt

    monkeypatch.setattr(tiff_module.tifffile, "imwrite", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_image(tmp_path / "x.tif", _stack())
    assert list(tmp_path.iterdir()) == []


def test_bad_tiff_inputs(tmp_path):
    good = write_image(tmp_path / "good.tif", _stack())
    cases = {
        "garbage.tif": np.random.default_rng(0).bytes(3000),
        "empty.tif": b"",
        "cut.tif": good.read_bytes()[:200],
        "half.tiff": good.read_bytes()[: good.stat().st_size // 2],
    }
    for name, payload in cases.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(ImageReadError) as err:
            read_volume(tmp_path / name)
        assert name in str(err.value)


def test_header_claiming_more_images_than_stored_is_refused(tmp_path):
    good = write_image(tmp_path / "good.tif", _stack())
    payload = good.read_bytes().replace(b"images=4", b"images=9").replace(b"slices=4", b"slices=9")
    (tmp_path / "lying.tif").write_bytes(payload)
    with pytest.raises(ImageReadError, match="lying.tif.*(truncated|damaged|corrupt)"):
        read_volume(tmp_path / "lying.tif")


def test_missing_and_unknown_paths(tmp_path):
    with pytest.raises(ImageReadError, match="nope.tif.*no such file"):
        read_volume(tmp_path / "nope.tif")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ImageReadError, match="notes.txt.*unsupported file type"):
        read_volume(tmp_path / "notes.txt")


def test_is_supported(tmp_path):
    assert SUPPORTED_SUFFIXES == (".tif", ".tiff", ".nii", ".nii.gz", ".dcm", ".zarr")
    for name in ("a.tif", "b.TIFF", "c.nii", "d.nii.gz", "e.dcm", "s.zarr"):
        assert is_supported(tmp_path / name)
    assert not is_supported(tmp_path / "f.png")
    assert not is_supported(tmp_path / "g.gz")
    write_image(tmp_path / "h.tif", _stack())
    (tmp_path / "h.tif").rename(tmp_path / "no_suffix")
    assert is_supported(tmp_path / "no_suffix")  # TIFF magic
    np.testing.assert_array_equal(read_volume(tmp_path / "no_suffix").data, _stack())
    (tmp_path / "empty_dir").mkdir()
    assert not is_supported(tmp_path / "empty_dir")


def test_io_package_imports_no_torch_qt_or_napari():
    code = (
        "import sys, napari_fcnseg.io, napari_fcnseg.io.dicom, napari_fcnseg.io.nifti, "
        "napari_fcnseg.io.tiff; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("compression", ["lzw", "zlib", "zstd", "packbits"])
def test_compressed_tiffs_open(tmp_path, compression):
    data = np.random.default_rng(0).integers(-1000, 1000, (5, 32, 32)).astype(np.int16)
    path = tmp_path / f"c_{compression}.tif"
    tifffile.imwrite(path, data, compression=compression, photometric="minisblack")
    np.testing.assert_array_equal(read_volume(path).data, data)


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
@pytest.mark.parametrize("n", [3, 4])
def test_three_or_four_slice_signed_or_float_stacks_are_slices_not_colour(tmp_path, dtype, n):
    data = (np.random.default_rng(n).normal(0, 300, (n, 16, 24))).astype(dtype)
    path = tmp_path / "few.tif"
    tifffile.imwrite(path, data)  # tifffile tags this RGB(A) by itself
    vol = read_volume(path)
    assert vol.data.shape == (n, 16, 24)
    np.testing.assert_array_equal(vol.data, data)


def test_ambiguous_uint8_planes_are_refused_with_a_way_out(tmp_path):
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, np.zeros((16, 24, 3), np.uint8), photometric="rgb")
    with pytest.raises(ImageReadError, match="minisblack"):
        read_volume(path)


def test_one_bit_masks_open_as_labels(tmp_path):
    mask = np.zeros((4, 16, 24), bool)
    mask[1, 3:9, 5:12] = True
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, mask, photometric="minisblack")
    with tifffile.TiffFile(path) as tf:
        assert tf.pages[0].bitspersample == 1
    vol = read_volume(path)
    assert vol.data.dtype == np.uint8
    np.testing.assert_array_equal(vol.data, mask.astype(np.uint8))
