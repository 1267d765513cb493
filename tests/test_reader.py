"""napari_fcnseg/_reader.py: what napari's File > Open hands to this plugin, and what comes back."""

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

import napari_fcnseg
import napari_fcnseg.io.tiff as tiff_module
from napari_fcnseg import io
from napari_fcnseg._reader import get_reader
from napari_fcnseg.layer_keys import CT_DISPLAY_WINDOW as CT_WINDOW
from napari_fcnseg.layer_keys import SOURCE_KEY

MANIFEST = Path(napari_fcnseg.__file__).parent / "napari.yaml"


def test_manifest_declares_everything():
    from npe2 import PluginManifest

    pm = PluginManifest.from_file(MANIFEST)
    assert pm.name == "napari-fcnseg"
    assert set(pm.categories) == {"Segmentation", "Annotation"}
    widgets = {w.display_name: w.command for w in pm.contributions.widgets}
    assert set(widgets) == {"Segment", "Review and Fine-tune", "Models", "Volumes", "CT window"}
    commands = {c.id: c.python_name for c in pm.contributions.commands}
    assert commands[widgets["Segment"]] == "napari_fcnseg.widgets.segment:SegmentWidget"
    assert commands[widgets["Models"]] == "napari_fcnseg.widgets.models:ModelsWidget"
    samples = {s.display_name for s in pm.contributions.sample_data}
    assert samples == {"CT-like abdomen (generated)", "MR-like abdomen (generated)"}
    (writer,) = pm.contributions.writers
    assert writer.layer_types == ["labels"]
    assert set(writer.filename_extensions) == {".nii", ".nii.gz", ".tif", ".tiff", ".dcm"}
    (reader,) = pm.contributions.readers
    assert reader.accepts_directories


def test_reader_tiff_and_nifti(tmp_path):
    vol = np.random.default_rng(0).integers(-1000, 400, (4, 16, 16)).astype(np.int16)
    tif = tmp_path / "scan.tif"
    io.write_image(tif, vol, spacing=(2.5, 0.7, 0.7))
    reader = get_reader(str(tif))
    assert callable(reader)
    ((data, attrs, kind),) = reader(str(tif))
    assert kind == "image" and data.shape == (4, 16, 16)
    np.testing.assert_allclose(attrs["scale"], (2.5, 0.7, 0.7), rtol=1e-4)
    assert attrs["metadata"][SOURCE_KEY] == str(tif)
    assert attrs["name"] == "scan" and attrs["units"] == "mm"
    assert attrs["axis_labels"] == ("z", "y", "x")
    assert attrs["contrast_limits"] == CT_WINDOW  # HU values are detected as CT

    nii = tmp_path / "mr.nii.gz"
    nib.save(
        nib.Nifti1Image(
            np.random.default_rng(1).random((16, 12, 5)).astype(np.float32),
            np.diag([0.9, 0.9, 3.0, 1.0]),
        ),
        nii,
    )
    ((data, attrs, _),) = get_reader(str(nii))(str(nii))
    assert data.size == 16 * 12 * 5 and attrs["name"] == "mr"
    assert sorted(np.round(attrs["scale"], 3)) == [0.9, 0.9, 3.0]
    assert "contrast_limits" not in attrs


def test_reader_places_the_volume_at_its_origin(tmp_path):
    nii = tmp_path / "shifted.nii.gz"
    affine = np.diag([-0.8, -0.8, 2.0, 1.0])
    affine[:3, 3] = [100.0, 50.0, -30.0]
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4), np.int16), affine), nii)
    ((data, attrs, _),) = get_reader(str(nii))(str(nii))
    volume = io.read_volume(nii)
    assert volume.origin is not None
    assert attrs["translate"] == pytest.approx(volume.origin)
    assert len(attrs["translate"]) == data.ndim


def test_reader_declines_what_it_cannot_read(tmp_path):
    rgb = tmp_path / "photo.tif"
    tifffile.imwrite(rgb, np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    assert get_reader(str(rgb)) is None
    assert get_reader(str(tmp_path / "notes.txt")) is None
    empty_dir = tmp_path / "folder"
    empty_dir.mkdir()
    assert get_reader(str(empty_dir)) is None
    bad = tmp_path / "broken.nii"
    bad.write_bytes(b"not a nifti file")
    reader = get_reader(str(bad))
    with pytest.raises(io.ImageReadError, match="broken.nii"):
        reader(str(bad))


@pytest.mark.parametrize("name", ["scan.png", "scan.jpg", "scan.nii.bz2", "scan.zip", "scan"])
def test_other_suffixes_are_left_to_napari(tmp_path, name):
    path = tmp_path / name
    io.write_image(tmp_path / "real.tif", np.ones((4, 8, 8), np.uint16))
    (tmp_path / "real.tif").rename(path)  # TIFF bytes, but not a name this plugin claims
    assert get_reader(str(path)) is None
    assert get_reader([str(tmp_path / "other.tif"), str(path)]) is None


def test_a_folder_without_dicom_is_not_ours(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "notes.txt").write_text("no DICOM here")
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert get_reader(str(folder)) is None
    assert get_reader([]) is None


def test_integer_maps_with_few_values_open_as_labels(tmp_path):
    labels = np.zeros((4, 16, 16), np.uint8)
    labels[1:3, 4:10, 4:10] = 1
    labels[2, 6:8, 6:8] = 2
    tif = tmp_path / "mask.tif"
    io.write_image(tif, labels, spacing=(3.0, 1.0, 1.0))
    ((data, attrs, kind),) = get_reader(str(tif))(str(tif))
    assert kind == "labels" and attrs["opacity"] == 0.5
    np.testing.assert_array_equal(data, labels)
    np.testing.assert_allclose(attrs["scale"], (3.0, 1.0, 1.0), rtol=1e-4)

    flat = tmp_path / "flat.tif"
    io.write_image(flat, np.full((4, 16, 16), 7, np.uint8))
    ((_, attrs, kind),) = get_reader(str(flat))(str(flat))
    assert kind == "image" and attrs["colormap"] == "gray"  # constant: nothing says labels


def test_several_files_open_as_one_layer_each(tmp_path):
    first, second = tmp_path / "a.tif", tmp_path / "b.nii.gz"
    io.write_image(first, np.full((3, 8, 8), 100, np.uint16))
    nib.save(nib.Nifti1Image(np.ones((8, 8, 2), np.float32), np.eye(4)), second)
    layers = get_reader([str(first), str(second)])([str(first), str(second)])
    assert [attrs["name"] for _, attrs, _ in layers] == ["a", "b"]
    assert [data.shape for data, _, _ in layers] == [(3, 8, 8), (2, 8, 8)]


def _gray(path, **kwargs):
    tifffile.imwrite(path, np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8), **kwargs)


def _lying(path):
    good = io.write_image(path.with_name("good_source.tif"), np.ones((4, 6, 5), np.uint16))
    path.write_bytes(
        good.read_bytes().replace(b"images=4", b"images=9").replace(b"slices=4", b"slices=9")
    )


def _half(path):
    good = io.write_image(path.with_name("good_source.tif"), np.ones((4, 32, 32), np.uint16))
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])


# Files get_reader must judge as read_volume does: (id, writer of the file at ``path``).
TIFFS = [
    ("gray-3d", lambda p: _gray(p, photometric="minisblack")),
    ("gray-2d", lambda p: tifffile.imwrite(p, np.ones((8, 8), np.float32))),
    ("imagej", lambda p: io.write_image(p, np.ones((3, 8, 8), np.int16), (2.0, 1.0, 1.0))),
    ("three-slice-int16", lambda p: tifffile.imwrite(p, np.ones((3, 8, 8), np.int16))),
    (
        "one-bit-mask",
        lambda p: tifffile.imwrite(p, np.ones((2, 8, 8), bool), photometric="minisblack"),
    ),
    (
        "thin-imagej-singletons",
        lambda p: tifffile.imwrite(p, np.ones((1, 3, 1, 1, 5), np.uint8), imagej=True),
    ),
    ("rgb", lambda p: tifffile.imwrite(p, np.zeros((8, 8, 3), np.uint8), photometric="rgb")),
    (
        "rgba",
        lambda p: tifffile.imwrite(
            p, np.zeros((8, 8, 4), np.uint8), photometric="rgb", extrasamples=["unassalpha"]
        ),
    ),
    ("planar-uint8-rgb", lambda p: tifffile.imwrite(p, np.zeros((3, 8, 8), np.uint8))),
    (
        "contig-int16-rgb",
        lambda p: tifffile.imwrite(p, np.zeros((8, 8, 3), np.int16), photometric="rgb"),
    ),
    (
        "channels",
        lambda p: tifffile.imwrite(
            p, np.zeros((4, 2, 6, 5), np.uint8), imagej=True, metadata={"axes": "ZCYX"}
        ),
    ),
    (
        "4d",
        lambda p: tifffile.imwrite(
            p, np.zeros((2, 4, 6, 5), np.uint8), imagej=True, metadata={"axes": "TZYX"}
        ),
    ),
    ("complex", lambda p: tifffile.imwrite(p, np.zeros((4, 8, 8), np.complex64))),
    ("garbage", lambda p: p.write_bytes(np.random.default_rng(0).bytes(3000))),
    ("empty", lambda p: p.write_bytes(b"")),
    ("half", _half),
    ("lying-header", _lying),
]


@pytest.mark.parametrize("make", [m for _, m in TIFFS], ids=[i for i, _ in TIFFS])
def test_get_reader_claims_a_tiff_exactly_when_it_can_be_read(tmp_path, make):
    """The header-only check agrees with reading the file: no RGB photo, damaged file or
    multi-channel image is claimed, and every grayscale image is."""
    path = tmp_path / "image.tif"
    make(path)
    try:
        expected = io.read_volume(path)
    except io.ImageReadError:
        expected = None
    reader = get_reader(str(path))
    if expected is None:
        assert reader is None
    else:
        assert callable(reader)
        ((data, _, _),) = reader(str(path))
        np.testing.assert_array_equal(data, expected.data)
        assert tiff_module.probe_tiff(path) == expected.data.shape


def test_get_reader_reads_no_pixels_until_napari_calls_the_reader(tmp_path, monkeypatch):
    vol = np.random.default_rng(3).integers(0, 4000, (5, 16, 12)).astype(np.uint16)
    tif = tmp_path / "scan.tif"
    io.write_image(tif, vol, spacing=(2.0, 0.5, 0.5))
    rgb = tmp_path / "photo.tif"
    tifffile.imwrite(rgb, np.zeros((16, 12, 3), np.uint8), photometric="rgb")
    calls = []

    def spy(owner, name):
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    spy(io, "read_volume")
    spy(tiff_module, "read_tiff")
    for cls in (tifffile.TiffFile, tifffile.TiffPageSeries, tifffile.TiffPage):
        spy(cls, "asarray")

    reader = get_reader(str(tif))
    assert callable(reader)
    assert get_reader(str(rgb)) is None
    assert get_reader([str(tif), str(rgb)]) is None
    assert calls == []  # deciding read headers only
    ((data, attrs, kind),) = reader(str(tif))
    assert "read_volume" in calls and "asarray" in calls  # the pixels are read now
    assert kind == "image"
    np.testing.assert_array_equal(data, vol)
    np.testing.assert_allclose(attrs["scale"], (2.0, 0.5, 0.5), rtol=1e-4)


def test_pixel_damage_the_header_cannot_show_is_reported_when_reading(tmp_path):
    data = np.random.default_rng(4).integers(0, 4000, (4, 32, 32)).astype(np.uint16)
    tif = tmp_path / "damaged.tif"
    tifffile.imwrite(tif, data, compression="zlib", photometric="minisblack")
    with tifffile.TiffFile(tif) as tf:
        offset = tf.pages[1].dataoffsets[0]
    raw = bytearray(tif.read_bytes())
    raw[offset : offset + 64] = b"\xff" * 64  # a broken zlib stream in slice 1
    tif.write_bytes(bytes(raw))
    reader = get_reader(str(tif))
    assert callable(reader)
    with pytest.raises(io.ImageReadError, match="damaged.tif"):
        reader(str(tif))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_pipe_named_like_a_tiff_is_not_opened(tmp_path):
    pipe = tmp_path / "stream.tif"
    os.mkfifo(pipe)
    assert get_reader(str(pipe)) is None  # opening it would wait for a writer forever
