"""napari_fcnseg/_writer.py: saving a Labels layer from napari (NIfTI, TIFF) with its sidecar."""

import logging

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_fcnseg import io
from napari_fcnseg._reader import get_reader
from napari_fcnseg._writer import write_labels
from napari_fcnseg.core.review import METADATA_KEY
from napari_fcnseg.io.sidecar import read_sidecar, sidecar_path
from napari_fcnseg.layer_keys import SOURCE_KEY


def _labels(shape=(4, 6, 5)):
    labels = np.zeros(shape, np.uint8)
    labels[1, 2:4, 1:3] = 1
    labels[2, 3, 3] = 2
    return labels


@pytest.fixture
def npe2():
    """npe2, with this plugin registered as napari would find it (not only after a viewer)."""
    import npe2

    npe2.PluginManager.instance().discover(include_npe1=False)
    return npe2


def test_npe2_read_and_write_round_trip(tmp_path, npe2):
    vol = np.random.default_rng(2).integers(0, 3000, (3, 8, 8)).astype(np.uint16)
    tif = tmp_path / "stack.tiff"
    io.write_image(tif, vol, spacing=(3.0, 1.0, 1.0))
    ((data, attrs, _),) = npe2.read([str(tif)], stack=False, plugin_name="napari-fcnseg")
    np.testing.assert_array_equal(data, vol)

    labels = (vol > 1500).astype(np.uint8)
    out = tmp_path / "labels.nii.gz"
    written = npe2.write(
        str(out),
        [(labels, {"scale": (3.0, 1.0, 1.0), "name": "l"}, "labels")],
        plugin_name="napari-fcnseg",
    )
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
    (path,) = write_labels(
        str(out), labels, {"metadata": attrs["metadata"], "scale": attrs["scale"]}
    )
    saved = nib.load(path)
    np.testing.assert_allclose(saved.affine, affine)
    assert saved.shape == (10, 12, 4)
    assert int(np.asarray(saved.dataobj).sum()) == int(labels.sum())
    tif_out = tmp_path / "ct_labels.tif"
    write_labels(str(tif_out), labels, {"scale": attrs["scale"]})
    np.testing.assert_array_equal(tifffile.imread(tif_out), labels)
    with pytest.raises(io.ImageWriteError):
        write_labels(str(tmp_path / "x.png"), labels, {})


@pytest.mark.parametrize("name", ["l.nii.gz", "l.nii", "l.tif", "l.tiff"])
def test_without_a_source_the_layer_scale_is_the_voxel_size(tmp_path, name):
    labels = _labels()
    (path,) = write_labels(
        str(tmp_path / name), labels, {"scale": (3.0, 0.5, 0.25), "translate": (10.0, -5.0, 2.0)}
    )
    assert path == str(tmp_path / name)
    back = io.read_volume(path)
    np.testing.assert_array_equal(back.data, labels)
    np.testing.assert_allclose(back.spacing, (3.0, 0.5, 0.25), rtol=1e-5)
    if name.endswith((".nii", ".nii.gz")):  # TIFF records no origin
        np.testing.assert_allclose(back.origin, (10.0, -5.0, 2.0))


def test_an_unusable_source_falls_back_to_the_layer_geometry(tmp_path, caplog):
    labels = _labels()
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti file")
    other = tmp_path / "other.nii.gz"  # readable, but not the labels' shape
    nib.save(nib.Nifti1Image(np.zeros((9, 9, 9), np.int16), np.diag([7.0, 7.0, 7.0, 1.0])), other)
    for source in (broken, other, tmp_path / "gone.nii.gz"):
        out = tmp_path / f"from_{source.name}"
        with caplog.at_level(logging.WARNING, logger="napari_fcnseg._writer"):
            caplog.clear()
            write_labels(
                str(out), labels, {"metadata": {SOURCE_KEY: str(source)}, "scale": (2.0, 1.0, 1.0)}
            )
        back = io.read_volume(out)
        np.testing.assert_array_equal(back.data, labels)
        np.testing.assert_allclose(back.spacing, (2.0, 1.0, 1.0), rtol=1e-5)
        warned = [r.getMessage() for r in caplog.records]
        if source == broken:
            assert any("broken.nii.gz" in m and "source geometry" in m for m in warned), warned
        else:
            assert warned == []


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        (np.full((4, 6, 5), -1, np.int16), "0..65535"),
        (np.full((4, 6, 5), 0.5, np.float32), "integers"),
        (np.zeros((2, 4, 6, 5), np.uint8), "2D or 3D"),
    ],
)
def test_unusable_labels_are_refused_and_nothing_is_written(tmp_path, labels, words):
    out = tmp_path / "l.nii.gz"
    with pytest.raises(io.ImageWriteError, match=words):
        write_labels(str(out), labels, {})
    assert list(tmp_path.iterdir()) == []


def test_class_names_and_review_go_into_a_sidecar_and_come_back(tmp_path):
    from napari_fcnseg.class_style import class_features

    labels = _labels()
    plain = tmp_path / "plain.nii.gz"
    write_labels(str(plain), labels, {"scale": (2.0, 1.0, 1.0)})
    assert not sidecar_path(plain).exists()  # nothing to resume: no sidecar

    features = pd.DataFrame(class_features(["background", "liver", "tumour"]))
    review = {"reviewed": [1, 2], "model": "tiny"}
    out = tmp_path / "named.tif"
    metadata = {SOURCE_KEY: str(tmp_path / "scan.nii.gz"), METADATA_KEY: review}
    write_labels(
        str(out), labels, {"scale": (2.0, 1.0, 1.0), "features": features, "metadata": metadata}
    )
    sidecar = read_sidecar(out)
    assert sidecar["classes"] == ["background", "liver", "tumour"]
    assert sidecar["review"] == review and sidecar["source"] == metadata[SOURCE_KEY]

    ((data, attrs, kind),) = get_reader(str(out))(str(out))
    assert kind == "labels"
    np.testing.assert_array_equal(data, labels)
    assert list(attrs["features"]["class"]) == ["background", "liver", "tumour"]
    assert attrs["metadata"][METADATA_KEY] == review
    assert attrs["metadata"][SOURCE_KEY] == metadata[SOURCE_KEY]
