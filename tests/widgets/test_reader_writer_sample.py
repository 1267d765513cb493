from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

import napari_fcnseg
from napari_fcnseg import io
from napari_fcnseg._reader import get_reader
from napari_fcnseg._sample_data import ct_abdomen, generated_abdomen, mr_abdomen
from napari_fcnseg._writer import write_labels
from napari_fcnseg.core.phantoms import generate_volume
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


def test_sample_data_is_deterministic_and_scaled():
    first = ct_abdomen()
    (image, image_meta, kind), (labels, labels_meta, labels_kind) = first
    assert (kind, labels_kind) == ("image", "labels")
    assert image.shape == labels.shape == (32, 256, 256)
    assert image.dtype == np.int16 and set(np.unique(labels)) <= {0, 1, 2}
    assert image_meta["contrast_limits"] == CT_WINDOW and image_meta["colormap"] == "gray"
    assert labels_meta["name"] == "CT-like abdomen ground truth"
    assert image_meta["scale"] == labels_meta["scale"] and len(image_meta["scale"]) == 3
    assert image_meta["axis_labels"] == labels_meta["axis_labels"] == ("z", "y", "x")
    assert np.array_equal(ct_abdomen()[0][0], image)
    (mr, mr_meta, _), _ = mr_abdomen()
    assert mr.dtype == np.float32 and mr_meta["contrast_limits"][0] < mr_meta["contrast_limits"][1]
    small = generated_abdomen("MR", seed=4, shape=(4, 32, 32))
    assert small[0][0].shape == (4, 32, 32)


def test_sample_data_through_napari(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-fcnseg", "ct_abdomen")
    assert [layer.name for layer in viewer.layers] == [
        "CT-like abdomen", "CT-like abdomen ground truth"]
    assert tuple(viewer.layers[0].contrast_limits) == CT_WINDOW
    assert tuple(viewer.layers[0].axis_labels) == ("z", "y", "x")
    if _napari_version() >= (0, 9):  # older napari keeps its own dims labels (0, 1, 2)
        assert tuple(viewer.dims.axis_labels) == ("z", "y", "x")


def _napari_version():
    import napari

    return tuple(int(part) for part in napari.__version__.split(".")[:2])


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
    nib.save(nib.Nifti1Image(np.random.default_rng(1).random((16, 12, 5)).astype(np.float32),
                             np.diag([0.9, 0.9, 3.0, 1.0])), nii)
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


def test_npe2_read_and_write_round_trip(tmp_path):
    import npe2

    vol = np.random.default_rng(2).integers(0, 3000, (3, 8, 8)).astype(np.uint16)
    tif = tmp_path / "stack.tiff"
    io.write_image(tif, vol, spacing=(3.0, 1.0, 1.0))
    ((data, attrs, _),) = npe2.read([str(tif)], stack=False, plugin_name="napari-fcnseg")
    np.testing.assert_array_equal(data, vol)

    labels = (vol > 1500).astype(np.uint8)
    out = tmp_path / "labels.nii.gz"
    written = npe2.write(str(out), [(labels, {"scale": (3.0, 1.0, 1.0), "name": "l"}, "labels")],
                         plugin_name="napari-fcnseg")
    assert written == [str(out)]
    back = io.read_volume(out)
    np.testing.assert_array_equal(back.data, labels)
    np.testing.assert_allclose(back.spacing, (3.0, 1.0, 1.0), rtol=1e-5)


def test_writer_puts_labels_back_on_the_source_grid(tmp_path):
    affine = np.array([[-0.8, 0, 0, 10], [0, 0.8, 0, -20], [0, 0, 2.5, 30], [0, 0, 0, 1.0]])
    source = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 12, 4), np.int16), affine), source)
    ((data, attrs, _),) = get_reader(str(source))(str(source))
    labels = np.zeros(data.shape, np.uint8)
    labels[1, 2:5, 3:6] = 2
    out = tmp_path / "ct_labels.nii.gz"
    (path,) = write_labels(str(out), labels, {"metadata": attrs["metadata"],
                                              "scale": attrs["scale"]})
    saved = nib.load(path)
    np.testing.assert_allclose(saved.affine, affine)
    assert saved.shape == (10, 12, 4)
    assert int(np.asarray(saved.dataobj).sum()) == int(labels.sum())
    tif_out = tmp_path / "ct_labels.tif"
    write_labels(str(tif_out), labels, {"scale": attrs["scale"]})
    np.testing.assert_array_equal(tifffile.imread(tif_out), labels)
    with pytest.raises(io.ImageWriteError):
        write_labels(str(tmp_path / "x.png"), labels, {})


def test_saved_labels_resume_with_class_names_and_review_state(qtbot, make_napari_viewer,
                                                               tiny_model, tmp_path):
    from napari_fcnseg.core.review import METADATA_KEY, ReviewState
    from napari_fcnseg.io.sidecar import sidecar_path

    viewer = make_napari_viewer()
    source = tmp_path / "ct.nii.gz"
    vol = generate_volume("CT", (6, 48, 48), 4)
    nib.save(nib.Nifti1Image(np.transpose(vol.image, (2, 1, 0)).astype(np.int16),
                             np.diag([0.8, 0.8, 2.5, 1.0])), source)
    (image,) = viewer.open(str(source), plugin="napari-fcnseg")
    _, seg = viewer.window.add_plugin_dock_widget("napari-fcnseg", "Segment")
    _, review = viewer.window.add_plugin_dock_widget("napari-fcnseg", "Review and Fine-tune")
    future = seg.segment("volume")
    qtbot.waitUntil(future.done, timeout=60_000)
    labels = seg.labels_layer
    labels.data_setitem((np.array([2]), np.array([5]), np.array([5])), 2)
    review.mark_reviewed([2, 4])
    qtbot.waitUntil(lambda: review.training_slices() == [2, 4], timeout=5000)
    out = tmp_path / "ct_labels.nii.gz"
    viewer.layers.selection = {labels}
    viewer.layers.save(str(out), selected=True, plugin="napari-fcnseg")
    assert out.is_file() and sidecar_path(out).is_file()
    saved = labels.data.copy()

    viewer2 = make_napari_viewer()
    (image2,) = viewer2.open(str(source), plugin="napari-fcnseg")
    (back,) = viewer2.open(str(out), plugin="napari-fcnseg")
    assert back._type_string == "labels"  # a label file opens as labels, not as a grey image
    np.testing.assert_array_equal(back.data, saved)
    np.testing.assert_allclose(back.scale, image2.scale)
    assert list(back.features["class"]) == ["background", "organ", "lesion"]
    state = ReviewState.from_metadata(back.metadata[METADATA_KEY])
    assert state.reviewed == {2, 4}
    _, review2 = viewer2.window.add_plugin_dock_widget("napari-fcnseg", "Review and Fine-tune")
    review2.labels_layer = back
    assert review2.slice_status() == {2: "edited + reviewed", 4: "reviewed"}
