"""Large uncompressed NIfTI and TIFF inputs read a few slices at a time, same as a full read."""

import itertools

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_fcnseg.cli import main
from napari_fcnseg.core.arrays import is_lazy
from napari_fcnseg.core.phantoms import generate_volume
from napari_fcnseg.io import read_volume
from napari_fcnseg.io.orientation import OrientedArray, display_geometry, to_display


def _affines():
    """Every axis permutation and flip, with voxel sizes that tell the axes apart."""
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((-1, 1), repeat=3):
            affine = np.eye(4)
            affine[:3, :3] = 0
            for i, (axis, sign) in enumerate(zip(perm, signs, strict=True)):
                affine[axis, i] = sign * (i + 1.0)
            affine[:3, 3] = (3.0, -4.0, 5.0)
            yield affine


def test_the_oriented_view_reads_what_the_full_reorientation_gives():
    source = np.random.default_rng(0).integers(0, 1000, (5, 6, 7)).astype(np.int16)
    for affine in _affines():
        full, ornt, spacing, origin = to_display(source, affine)
        ornt2, spacing2, origin2 = display_geometry(affine, source.shape)
        view = OrientedArray(source, ornt2, np.dtype(np.int16))
        assert view.shape == full.shape and (spacing2, origin2) == (spacing, origin)
        for k in range(full.shape[0]):
            assert np.array_equal(view[k], full[k])
        assert np.array_equal(view[1:4, ::2, -1], full[1:4, ::2, -1])
        assert np.array_equal(view[..., 2], full[..., 2])
        assert np.array_equal(np.asarray(view), full)
    with pytest.raises(IndexError):
        view[5]


def test_an_uncompressed_nifti_is_streamed_with_the_full_reads_geometry_and_values(tmp_path):
    data = np.random.default_rng(1).integers(0, 3000, (12, 10, 6)).astype(np.int16)
    affine = np.array([[0, 0, -2.5, 10], [-0.8, 0, 0, 20], [0, 0.8, 0, -30], [0, 0, 0, 1.0]])
    img = nib.Nifti1Image(data[..., None], affine)  # stored 4D with a trailing singleton
    img.header.set_slope_inter(1.0, -1024.0)
    nib.save(img, tmp_path / "ct.nii")
    full = read_volume(tmp_path / "ct.nii")
    streamed = read_volume(tmp_path / "ct.nii", streamed=True)
    assert is_lazy(streamed.data) and not is_lazy(full.data)
    assert streamed.data.shape == full.data.shape and streamed.spacing == full.spacing
    assert streamed.origin == pytest.approx(full.origin)
    assert np.array_equal(streamed.header["ornt"], full.header["ornt"])
    for k in range(full.data.shape[0]):
        assert np.array_equal(streamed.data[k], full.data[k].astype(np.float32))
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "ct.nii.gz")
    assert not is_lazy(read_volume(tmp_path / "ct.nii.gz", streamed=True).data)  # read whole


def test_only_uncompressed_contiguous_tiff_stacks_are_streamed(tmp_path):
    data = np.random.default_rng(2).integers(0, 4000, (6, 16, 20)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "plain.tif", data, imagej=True,
                     resolution=(2.0, 2.0), metadata={"spacing": 3.0, "unit": "mm", "axes": "ZYX"})
    tifffile.imwrite(tmp_path / "packed.tif", data, compression="zlib")
    streamed = read_volume(tmp_path / "plain.tif", streamed=True)
    assert is_lazy(streamed.data) and streamed.data.dtype == np.uint16
    assert streamed.spacing == read_volume(tmp_path / "plain.tif").spacing == (3.0, 0.5, 0.5)
    assert np.array_equal(streamed.data[4], data[4]) and np.array_equal(streamed.data[:], data)
    tifffile.imwrite(tmp_path / "big_endian.tif", data, byteorder=">")
    swapped = read_volume(tmp_path / "big_endian.tif", streamed=True)
    assert is_lazy(swapped.data) and np.array_equal(swapped.data[2:5], data[2:5])
    packed = read_volume(tmp_path / "packed.tif", streamed=True)
    assert not is_lazy(packed.data) and np.array_equal(packed.data, data)
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(Exception, match="colour"):
        read_volume(tmp_path / "rgb.tif", streamed=True)


def test_cli_streams_a_nifti_into_a_zarr_store_with_the_labels_of_a_full_read(store, tmp_path):
    ph = generate_volume("CT", (5, 64, 64), 4)
    nib.save(nib.Nifti1Image(ph.image.transpose(2, 1, 0), np.diag([-0.7, -0.7, 2.5, 1])),
             tmp_path / "scan.nii")
    assert main(["predict", str(tmp_path / "scan.nii"), str(tmp_path / "a.nii.gz"),
                 "--model", "tiny"]) == 0
    assert main(["predict", str(tmp_path / "scan.nii"), str(tmp_path / "b.zarr"),
                 "--model", "tiny"]) == 0
    whole, streamed = read_volume(tmp_path / "a.nii.gz"), read_volume(tmp_path / "b.zarr")
    assert np.array_equal(streamed.data[:], whole.data)  # CT: the same fixed window
    assert streamed.spacing == pytest.approx(whole.spacing)
