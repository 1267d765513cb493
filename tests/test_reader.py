"""napari_fcnseg/_reader.py: what napari's File > Open hands to this plugin, and what comes back."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

import napari_fcnseg
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
