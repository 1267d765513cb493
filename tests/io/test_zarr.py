"""Zarr / OME-Zarr: read lazily, write labels slice by slice, never leave a half-written store."""

import numpy as np
import pytest
import zarr

from napari_fcnseg.cli import main
from napari_fcnseg.core.phantoms import generate_volume
from napari_fcnseg.io import ImageWriteError, read_volume, write_labels
from napari_fcnseg.io.zarr_io import ZarrLabelsWriter, is_zarr


@pytest.fixture
def ct_zarr(tmp_path):
    ph = generate_volume("CT", (5, 64, 64), 4)
    path = tmp_path / "scan.zarr"
    array = zarr.open_array(store=str(path), mode="w", shape=ph.image.shape,
                            chunks=(1, 64, 64), dtype=ph.image.dtype)
    array[:] = ph.image
    return path, ph


def test_a_zarr_array_is_read_lazily(ct_zarr):
    path, ph = ct_zarr
    vol = read_volume(path)
    assert vol.format == "zarr" and not isinstance(vol.data, np.ndarray)
    assert vol.data.shape == ph.image.shape and np.array_equal(vol.data[2], ph.image[2])


def test_labels_round_trip_through_ome_zarr_with_spacing_and_classes(tmp_path):
    labels = np.random.default_rng(0).integers(0, 3, (4, 16, 20)).astype(np.uint8)
    like = read_volume(_nifti(tmp_path, labels.shape))
    out = write_labels(tmp_path / "lab.zarr", labels, like, class_names=["bg", "a", "b"])
    group = zarr.open_group(store=str(out), mode="r")
    scale = group.attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]
    assert scale["scale"] == pytest.approx(list(like.spacing))
    back = read_volume(out)
    assert np.array_equal(back.data[:], labels) and back.spacing == pytest.approx(like.spacing)
    assert back.header["class_names"] == ["bg", "a", "b"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _nifti(tmp_path, shape):
    import nibabel as nib

    path = tmp_path / "ref.nii.gz"
    affine = np.diag([-0.8, -0.9, 2.5, 1.0])
    nib.save(nib.Nifti1Image(np.zeros(shape[::-1], np.int16), affine), path)
    return path


def test_an_aborted_store_leaves_the_old_one_and_nothing_else(tmp_path):
    dst = tmp_path / "out.zarr"
    first = ZarrLabelsWriter(dst, (2, 8, 8))
    first.array[0] = 1
    first.commit()
    second = ZarrLabelsWriter(dst, (2, 8, 8))
    second.array[0] = 2
    second.abort()
    assert read_volume(dst).data[0].max() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


def test_a_file_is_never_replaced_by_a_store(tmp_path):
    target = tmp_path / "precious.zarr"
    target.write_bytes(b"not a store")
    with pytest.raises(ImageWriteError, match="not a zarr store"):
        ZarrLabelsWriter(target, (1, 4, 4))
    assert target.read_bytes() == b"not a store" and is_zarr(target) is False


def test_cli_segments_a_zarr_volume_into_a_zarr_store(store, ct_zarr, tmp_path, capsys):
    path, ph = ct_zarr
    out = tmp_path / "labels.zarr"
    assert main(["predict", str(path), str(out), "--model", "tiny"]) == 0
    expected = tmp_path / "expected.tif"
    import tifffile

    tif = tmp_path / "scan.tif"
    tifffile.imwrite(tif, ph.image)
    assert main(["predict", str(tif), str(expected), "--model", "tiny"]) == 0
    got = read_volume(out)
    assert np.array_equal(got.data[:], tifffile.imread(expected))  # CT: the same fixed window
    assert got.header["class_names"] == ["background", "organ", "lesion"]
    capsys.readouterr()
    assert main(["predict", str(path), str(path), "--model", "tiny"]) != 0  # over its input
    assert "input" in capsys.readouterr().err and np.array_equal(read_volume(path).data[:],
                                                                ph.image)


def test_a_folder_of_zarr_cases_is_a_cohort(store, ct_zarr, tmp_path, capsys):
    path, _ = ct_zarr
    out = tmp_path / "out"
    out.mkdir()
    assert main(["predict", str(path.parent), str(out), "--model", "tiny"]) == 0
    assert is_zarr(out / "scan_labels.zarr")
