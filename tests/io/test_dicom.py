"""DICOM series: grouping, spatial sorting, rescale, geometry and every refusal."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from pydicom.uid import generate_uid

from napari_fcnseg.io import ImageReadError, is_supported, read_volume, write_labels


def _raw(n: int = 6, rows: int = 5, cols: int = 4, dtype=np.int16) -> np.ndarray:
    """Stored values encoding (slice, row, column), so any misordering shows."""
    k, r, c = np.meshgrid(np.arange(n), np.arange(rows), np.arange(cols), indexing="ij")
    return (1000 + 100 * k + 10 * r + c).astype(dtype)


def test_series_is_sorted_by_position_and_rescaled_to_hu(tmp_path, synth):
    raw = _raw()
    synth.make_series(tmp_path / "ct", raw, seed=3)
    vol = read_volume(tmp_path / "ct")
    assert vol.data.dtype == np.int16
    np.testing.assert_array_equal(vol.data, raw.astype(np.int32) - 1024)
    assert vol.spacing == pytest.approx((2.5, 0.8, 0.6))
    assert vol.origin == pytest.approx((30.0, -120.0, -100.0))
    assert vol.format == "dicom" and vol.modality == "CT"
    assert len(vol.series) == 1 and vol.series[0]["n_slices"] == 6
    z = [float(synth.dcmread(f).ImagePositionPatient[2]) for f in vol.header["files"]]
    assert z == sorted(z) and len(z) == 6


def test_order_ignores_file_names_and_instance_numbers(tmp_path, synth):
    raw = _raw(n=8)
    _, paths = synth.make_series(tmp_path / "ct", raw, seed=11)
    assert paths != sorted(paths)  # shuffled names
    numbers = [int(synth.dcmread(p).InstanceNumber) for p in paths]
    assert numbers != sorted(numbers)  # shuffled instance numbers
    vol = read_volume(tmp_path / "ct")
    np.testing.assert_array_equal(vol.data[:, 0, 0], raw[:, 0, 0] - 1024)
    assert vol.header["files"] == [str(p) for p in paths]


def test_one_file_reads_its_siblings_and_its_own_series(tmp_path, synth):
    raw = _raw(n=4)
    uid_small, small = synth.make_series(tmp_path, raw, seed=1)
    uid_big, _ = synth.make_series(tmp_path, _raw(n=7), seed=2, origin=(0, 0, 0))
    vol = read_volume(small[2])
    np.testing.assert_array_equal(vol.data, raw - 1024)
    assert [s["uid"] for s in vol.series] == [uid_small, uid_big]
    assert read_volume(tmp_path).series[0]["uid"] == uid_big  # folder: most slices


def test_series_uid_selects_and_unknown_uid_is_refused(tmp_path, synth):
    uid_a, _ = synth.make_series(tmp_path, _raw(n=3), seed=1, SeriesDescription="a")
    uid_b, _ = synth.make_series(tmp_path, _raw(n=5), seed=2, SeriesDescription="b")
    vol = read_volume(tmp_path, series_uid=uid_a)
    assert vol.data.shape == (3, 5, 4)
    assert vol.series == [
        {"uid": uid_a, "description": "a", "n_slices": 3, "modality": "CT"},
        {"uid": uid_b, "description": "b", "n_slices": 5, "modality": "CT"},
    ]
    with pytest.raises(ImageReadError, match=f"{tmp_path.name}.*no series with UID 1.2.3"):
        read_volume(tmp_path, series_uid="1.2.3")


def test_stray_files_and_non_image_objects_are_ignored(tmp_path, synth):
    synth.make_series(tmp_path, _raw(n=3))
    (tmp_path / "README.txt").write_text("not an image")
    (tmp_path / "junk.dcm").write_bytes(b"\x00" * 50)
    synth.make_sr(tmp_path / "report.dcm")
    (tmp_path / "sub").mkdir()
    vol = read_volume(tmp_path)
    assert vol.data.shape == (3, 5, 4) and len(vol.series) == 1
    assert is_supported(tmp_path)


def test_subfolders_are_searched_when_a_folder_is_given(tmp_path, synth):
    _, paths = synth.make_series(tmp_path / "patient" / "series1", _raw(n=3), suffix="")
    assert is_supported(tmp_path / "patient")
    assert read_volume(tmp_path / "patient").data.shape == (3, 5, 4)
    assert is_supported(paths[0])  # no suffix: recognised by the DICM marker
    assert read_volume(paths[0]).data.shape == (3, 5, 4)


def test_raw_data_sets_without_file_meta_are_read(tmp_path, synth):
    from pydicom.filewriter import dcmwrite

    raw = _raw(n=3)
    _, paths = synth.make_series(tmp_path, raw)
    for path in paths:  # rewrite as bare implicit-VR data sets: no preamble, no DICM marker
        ds = synth.dcmread(path)
        del ds.file_meta
        ds.preamble = None
        dcmwrite(path, ds, implicit_vr=True, little_endian=True)
        assert path.read_bytes()[128:132] != b"DICM"
    vol = read_volume(tmp_path)
    np.testing.assert_array_equal(vol.data, raw - 1024)


@pytest.mark.parametrize(
    ("raw_dtype", "slope", "intercept", "dtype"),
    [
        (np.uint16, 1.0, -1024.0, np.int16),
        (np.int16, 1.0, 0.0, np.int16),
        (np.uint16, 1.0, 0.0, np.uint16),
        (np.int16, 2.0, -1024.0, np.float32),
        (np.int16, 1.0, -1024.5, np.float32),
    ],
)
def test_rescale_dtypes(tmp_path, synth, raw_dtype, slope, intercept, dtype):
    raw = _raw(n=3, dtype=raw_dtype)
    synth.make_series(tmp_path, raw, slope=slope, intercept=intercept)
    vol = read_volume(tmp_path)
    assert vol.data.dtype == dtype
    np.testing.assert_allclose(vol.data, raw.astype(np.float64) * slope + intercept)


def test_shifted_values_beyond_int16_give_exact_float32(tmp_path, synth):
    raw = _raw(n=3, dtype=np.uint16)
    raw[2] += 38000  # -> -24 .. 38996 HU: fits neither uint16 nor int16
    synth.make_series(tmp_path, raw, intercept=-1024.0)
    vol = read_volume(tmp_path)
    assert vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, raw.astype(np.int64) - 1024)


def test_per_slice_rescale_gives_float32(tmp_path, synth):
    raw = _raw(n=3)
    _, paths = synth.make_series(tmp_path, raw)
    ds = synth.dcmread(paths[1])
    ds.RescaleSlope = 0.5
    synth.save(ds, paths[1])
    vol = read_volume(tmp_path)
    assert vol.data.dtype == np.float32
    np.testing.assert_allclose(vol.data[1], raw[1] * 0.5 - 1024)
    np.testing.assert_allclose(vol.data[2], raw[2] - 1024.0)


def test_sagittal_series_is_reoriented_like_nifti(tmp_path, synth):
    # columns run posterior (+y), rows run inferior (-z), slices step along -x (to the right)
    raw = _raw(n=5, rows=6, cols=4)
    synth.make_series(tmp_path, raw, iop=(0, 1, 0, 0, 0, -1), spacing=(1.5, 0.8, 0.6))
    vol = read_volume(tmp_path)
    # display (z, y, x) = (superior, posterior, left): z is the flipped row axis,
    # y the column axis (posterior), x the slice axis (left)
    np.testing.assert_array_equal(vol.data, (raw[::-1, ::-1, :] - 1024).transpose(1, 2, 0))
    assert vol.spacing == pytest.approx((0.8, 0.6, 1.5))


def test_descending_positions_and_tilted_normal_sort_along_the_normal(tmp_path, synth):
    raw = _raw(n=5)
    t = np.deg2rad(15)
    iop = (1, 0, 0, 0, np.cos(t), np.sin(t))  # gantry-tilted: normal is not the z axis
    normal = np.cross(iop[:3], iop[3:])
    positions = [np.array([5.0, 7.0, 9.0]) + (4 - k) * 2.0 * normal for k in range(5)]
    synth.make_series(tmp_path, raw[::-1], iop=iop, positions=positions)
    vol = read_volume(tmp_path)
    np.testing.assert_array_equal(vol.data, raw - 1024)
    assert vol.spacing[0] == pytest.approx(2.0)


def test_dicom_labels_written_as_nifti_overlay_the_dicom_geometry(tmp_path, synth):
    raw = _raw(n=6, rows=7, cols=5)
    synth.make_series(tmp_path / "ct", raw, iop=(-1, 0, 0, 0, 1, 0))
    vol = read_volume(tmp_path / "ct")
    labels = (vol.data > 150).astype(np.uint8)
    out = write_labels(tmp_path / "labels.nii.gz", labels, like=vol)
    back = read_volume(out)
    np.testing.assert_array_equal(back.data, labels)
    assert back.spacing == pytest.approx(vol.spacing)
    assert back.origin == pytest.approx(vol.origin)
    img = nib.load(out)
    np.testing.assert_allclose(img.affine, vol.affine)
    assert img.header.get_sform(coded=True)[1] == 1
    # voxel (i, j, k) of the file = (column, row, slice) of the DICOM stack, at the DICOM spot
    assert img.shape == (5, 7, 6)
    ijk_to_lps = img.affine.copy()
    ijk_to_lps[:2] *= -1
    np.testing.assert_allclose(ijk_to_lps @ [0, 0, 0, 1], [-100, -120, 30, 1])
    np.testing.assert_allclose(ijk_to_lps @ [1, 0, 0, 1], [-100.6, -120, 30, 1])


def test_single_slice_is_a_2d_image_with_thickness_as_depth(tmp_path, synth):
    raw = _raw(n=1)
    _, paths = synth.make_series(tmp_path, raw)
    vol = read_volume(paths[0])
    np.testing.assert_array_equal(vol.data, raw[0] - 1024)
    assert vol.spacing == pytest.approx((0.8, 0.6))
    out = write_labels(tmp_path / "one.nii", vol.data > 0, like=vol)
    assert nib.load(out).shape == (4, 5, 1)


def test_missing_positions_fall_back_to_instance_number(tmp_path, synth):
    raw = _raw(n=4)
    _, paths = synth.make_series(tmp_path, raw, seed=5)
    for k, path in enumerate(paths):
        ds = synth.dcmread(path)
        del ds.ImagePositionPatient
        ds.InstanceNumber = k + 1
        synth.save(ds, path)
    vol = read_volume(tmp_path)
    np.testing.assert_array_equal(vol.data, raw - 1024)
    assert vol.spacing == pytest.approx((2.5, 0.8, 0.6)) and vol.origin is None


def test_multiframe_object_uses_per_frame_positions(tmp_path, synth):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    raw = _raw(n=4)
    order = [2, 0, 3, 1]  # frames stored out of spatial order
    ds = synth.ct_dataset(raw[order], NumberOfFrames=4, SeriesInstanceUID=generate_uid())

    def group(**seqs):
        g = Dataset()
        for name, (key, value) in seqs.items():
            item = Dataset()
            setattr(item, key, value)
            setattr(g, name, Sequence([item]))
        return g

    shared = group(
        PlaneOrientationSequence=("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]),
        PixelMeasuresSequence=("PixelSpacing", [0.9, 0.7]),
    )
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence(
        [group(PlanePositionSequence=("ImagePositionPatient", [0, 0, 3.0 * k])) for k in order]
    )
    vol = read_volume(synth.save(ds, tmp_path / "enhanced.dcm"))
    np.testing.assert_array_equal(vol.data, raw)
    assert vol.spacing == pytest.approx((3.0, 0.9, 0.7))


# --- refusals -------------------------------------------------------------------------


def _expect(path, pattern: str) -> str:
    with pytest.raises(ImageReadError, match=pattern) as err:
        read_volume(path)
    message = str(err.value)
    assert path.name in message
    return message


def test_folder_without_images(tmp_path, synth):
    (tmp_path / "empty").mkdir()
    _expect(tmp_path / "empty", "no DICOM images found")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    synth.make_sr(tmp_path / "docs" / "report.dcm")
    _expect(tmp_path / "docs", "no DICOM images found")


def test_non_image_object_alone(tmp_path, synth):
    path = synth.make_sr(tmp_path / "report.dcm")
    _expect(path, "no image data \\(Basic Text SR Storage\\)")


def test_garbage_and_empty_dcm(tmp_path):
    (tmp_path / "garbage.dcm").write_bytes(np.random.default_rng(2).bytes(4000))
    (tmp_path / "empty.dcm").write_bytes(b"")
    _expect(tmp_path / "garbage.dcm", "garbage.dcm")
    _expect(tmp_path / "empty.dcm", "empty")


def test_duplicated_slice(tmp_path, synth):
    positions = [np.array([0, 0, z]) for z in (0.0, 2.0, 4.0, 4.0, 6.0)]
    synth.make_series(tmp_path / "dup", _raw(n=5), positions=positions)
    _expect(tmp_path / "dup", "duplicated slice at position 4.00 mm")


def test_missing_slice(tmp_path, synth):
    _, paths = synth.make_series(tmp_path / "gap", _raw(n=6))
    paths[3].unlink()
    message = _expect(tmp_path / "gap", "missing slice\\(s\\): a gap of 5.00 mm")
    assert "35.00 and 40.00" in message and "2.50 mm apart" in message


def test_mixed_sizes_in_one_series(tmp_path, synth):
    uid, _ = synth.make_series(tmp_path / "mixed", _raw(n=3))
    synth.make_series(tmp_path / "mixed", _raw(n=2, rows=8), uid=uid, origin=(0, 0, 90), seed=9)
    _expect(tmp_path / "mixed", "mixes image sizes \\((5x4|8x4) in .*, (8x4|5x4) in ")


def test_mixed_orientations_in_one_series(tmp_path, synth):
    uid, _ = synth.make_series(tmp_path / "orient", _raw(n=3))
    synth.make_series(
        tmp_path / "orient", _raw(n=2), uid=uid, iop=(0, 1, 0, 0, 0, -1), origin=(9, 0, 0)
    )
    _expect(tmp_path / "orient", "different orientations")


def test_colour_dicom(tmp_path, synth):
    ds = synth.ct_dataset(np.zeros((4, 5, 3), np.uint8), SeriesInstanceUID=generate_uid())
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 4, 5, 3
    ds.PhotometricInterpretation, ds.PlanarConfiguration = "RGB", 0
    _expect(synth.save(ds, tmp_path / "photo.dcm"), "colour DICOM")


def test_truncated_pixel_data(tmp_path, synth):
    _, paths = synth.make_series(tmp_path, _raw(n=3))
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[:-17])
    _expect(paths[0], "pixel data")
