"""NIfTI reading, reorientation and label write-back onto the source grid."""

from __future__ import annotations

import gzip
import struct

import nibabel as nib
import numpy as np
import pytest
from nibabel import orientations

from napari_fcnseg.io import ImageReadError, ImageWriteError, read_volume, write_labels

SPACING = (2.5, 0.7, 0.8)  # (z, y, x) mm
ORIGIN = (30.0, -120.0, -100.0)  # (z, y, x): superior, posterior, left of voxel 0


def _reference() -> np.ndarray:
    """A (z, y, x) int16 volume whose values encode their index, so any flip shows."""
    z, y, x = np.meshgrid(np.arange(5), np.arange(6), np.arange(7), indexing="ij")
    return (100 * z + 10 * y + x).astype(np.int16)


def _lps_affine() -> np.ndarray:
    """RAS affine of ``_reference().transpose(2, 1, 0)`` stored in LPS index order."""
    aff = np.diag([-SPACING[2], -SPACING[1], SPACING[0], 1.0])
    aff[:3, 3] = (-ORIGIN[2], -ORIGIN[1], ORIGIN[0])
    return aff


def _rotation(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    rot = np.eye(4)
    rot[:3, :3] = [[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]]
    rx = np.eye(4)
    rx[1:3, 1:3] = [[np.cos(t / 2), -np.sin(t / 2)], [np.sin(t / 2), np.cos(t / 2)]]
    return rot @ rx


# orientation transforms applied to the canonical LPS-ordered array: flips and permutations
VARIANTS = {
    "lps": [[0, 1], [1, 1], [2, 1]],
    "ras": [[0, -1], [1, -1], [2, 1]],
    "flip_z": [[0, 1], [1, 1], [2, -1]],
    "permuted_sag": [[2, 1], [0, -1], [1, 1]],
    "permuted_cor": [[1, -1], [2, 1], [0, -1]],
    "all_flipped_permuted": [[1, -1], [0, -1], [2, -1]],
}


def _variant(name: str, oblique: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The reference volume stored with a non-canonical layout (and optionally rotated)."""
    canonical = _reference().transpose(2, 1, 0)
    ornt = np.array(VARIANTS[name], dtype=float)
    raw = orientations.apply_orientation(canonical, ornt)
    aff = _lps_affine() @ orientations.inv_ornt_aff(ornt, canonical.shape)
    return np.ascontiguousarray(raw), _rotation(oblique) @ aff


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_every_layout_reads_to_the_same_display_array(tmp_path, synth, name, suffix):
    raw, aff = _variant(name)
    vol = read_volume(synth.make_nifti(tmp_path / f"v{suffix}", raw, aff))
    np.testing.assert_array_equal(vol.data, _reference())
    assert vol.data.dtype == np.int16 and vol.data.flags.c_contiguous
    np.testing.assert_allclose(vol.spacing, SPACING, rtol=1e-6)
    np.testing.assert_allclose(vol.origin, ORIGIN, atol=1e-4)
    assert vol.format == "nifti" and vol.modality is None
    np.testing.assert_allclose(vol.affine, nib.load(tmp_path / f"v{suffix}").affine)


def test_oblique_affine_picks_nearest_axes_and_true_voxel_sizes(tmp_path, synth):
    raw, aff = _variant("permuted_cor", oblique=20.0)
    vol = read_volume(synth.make_nifti(tmp_path / "obl.nii.gz", raw, aff))
    np.testing.assert_array_equal(vol.data, _reference())
    np.testing.assert_allclose(vol.spacing, SPACING, rtol=1e-5)


@pytest.mark.parametrize(
    ("name", "oblique", "codes"),
    [
        ("lps", 0.0, (1, 1)),
        ("ras", 0.0, (2, 2)),
        ("flip_z", 0.0, (1, 2)),
        ("permuted_sag", 0.0, (1, 1)),
        ("all_flipped_permuted", 0.0, (1, 4)),
        ("permuted_cor", 25.0, (1, 1)),
        ("ras", -35.0, (0, 1)),
    ],
)
def test_labels_round_trip_onto_the_source_grid(tmp_path, synth, name, oblique, codes):
    raw, aff = _variant(name, oblique)
    raw = raw * 3 - 400  # int16 "HU"
    src = synth.make_nifti(
        tmp_path / "ct.nii", raw.astype(np.int16), aff, qcode=codes[0], scode=codes[1]
    )
    vol = read_volume(src)
    labels = (vol.data > 500).astype(np.uint8) + (vol.data > 1000)
    out = write_labels(tmp_path / "labels.nii.gz", labels, like=vol)

    source, written = nib.load(src), nib.load(out)
    expected = (raw > 500).astype(np.uint8) + (raw > 1000)  # computed in source array space
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), expected)
    assert written.shape == source.shape
    assert written.get_data_dtype() == np.uint8
    assert np.array_equal(written.affine, source.affine)
    for form in ("qform", "sform"):
        (m_src, c_src), (m_out, c_out) = (
            getattr(img.header, f"get_{form}")(coded=True) for img in (source, written)
        )
        assert int(c_src) == int(c_out)
        if m_src is not None:
            np.testing.assert_array_equal(m_out, m_src)
    # and reading the labels back shows them where they were drawn
    np.testing.assert_array_equal(read_volume(out).data, labels)


def test_file_without_qform_or_sform_keeps_codes_zero(tmp_path, synth):
    raw, aff = _variant("permuted_sag")
    buf = bytearray(synth.make_nifti(tmp_path / "tmp.nii", raw, aff).read_bytes())
    struct.pack_into("<hh", buf, 252, 0, 0)  # qform_code, sform_code: fall back to pixdim
    src = tmp_path / "nocodes.nii"
    src.write_bytes(bytes(buf))
    vol = read_volume(src)
    out = write_labels(tmp_path / "l.nii.gz", vol.data > 200, like=vol)
    source, written = nib.load(src), nib.load(out)
    assert [int(written.header[k]) for k in ("qform_code", "sform_code")] == [0, 0]
    assert np.array_equal(written.affine, source.affine)
    np.testing.assert_array_equal(
        np.asanyarray(written.dataobj), np.asanyarray(source.dataobj) > 200
    )


def test_int16_with_integral_intercept_stays_int16(tmp_path, synth):
    raw = (_reference() * 4).transpose(2, 1, 0).astype(np.int16)
    vol = read_volume(
        synth.make_nifti(tmp_path / "ct.nii", raw, _lps_affine(), slope=1, inter=-1024)
    )
    assert vol.data.dtype == np.int16
    np.testing.assert_array_equal(vol.data, raw.transpose(2, 1, 0).astype(np.int32) - 1024)


def test_uint16_shifted_negative_becomes_int16(tmp_path, synth):
    raw = _reference().astype(np.uint16).transpose(2, 1, 0)
    vol = read_volume(
        synth.make_nifti(tmp_path / "u.nii.gz", raw, _lps_affine(), slope=1, inter=-1024)
    )
    assert vol.data.dtype == np.int16
    assert int(vol.data.min()) == -1024 and int(vol.data.max()) == int(raw.max()) - 1024


def test_non_trivial_slope_gives_float32(tmp_path, synth):
    raw = _reference().transpose(2, 1, 0)
    vol = read_volume(
        synth.make_nifti(tmp_path / "s.nii", raw, _lps_affine(), slope=0.5, inter=2.5)
    )
    assert vol.data.dtype == np.float32
    np.testing.assert_allclose(vol.data, _reference() * 0.5 + 2.5)


@pytest.mark.parametrize(("dtype", "expected"), [(np.float64, np.float32), (np.uint8, np.uint8)])
def test_unscaled_dtypes(tmp_path, synth, dtype, expected):
    raw = (_reference() % 200).astype(dtype).transpose(2, 1, 0)
    vol = read_volume(synth.make_nifti(tmp_path / "d.nii", raw, _lps_affine()))
    assert vol.data.dtype == expected
    np.testing.assert_array_equal(vol.data, (_reference() % 200).astype(expected))


def test_2d_image_is_shown_as_stored_and_written_back(tmp_path, synth):
    raw = np.arange(6 * 4, dtype=np.int16).reshape(6, 4)
    aff = np.diag([0.5, 0.9, 1.0, 1.0])
    src = synth.make_nifti(tmp_path / "slice.nii", raw, aff)
    vol = read_volume(src)
    np.testing.assert_array_equal(vol.data, raw.T)
    assert vol.spacing == pytest.approx((0.9, 0.5))
    out = write_labels(tmp_path / "slice_labels.nii.gz", vol.data > 10, like=vol)
    np.testing.assert_array_equal(np.asanyarray(nib.load(out).dataobj), raw > 10)


def test_trailing_singleton_4d_is_squeezed_and_restored(tmp_path, synth):
    raw, aff = _variant("ras")
    src = synth.make_nifti(tmp_path / "t1.nii.gz", raw[..., None], aff)
    vol = read_volume(src)
    np.testing.assert_array_equal(vol.data, _reference())
    out = write_labels(tmp_path / "l.nii.gz", vol.data > 300, like=vol)
    written = nib.load(out)
    assert written.shape == raw.shape + (1,)
    np.testing.assert_array_equal(np.asanyarray(written.dataobj)[..., 0], raw > 300)


@pytest.mark.parametrize("shape", [(4, 5, 6, 3), (4, 5, 6, 1, 2)])
def test_time_series_is_refused(tmp_path, synth, shape):
    path = synth.make_nifti(tmp_path / "fmri.nii.gz", np.zeros(shape, np.int16))
    with pytest.raises(ImageReadError, match="4D NIfTI \\(time series\\) is not supported") as err:
        read_volume(path)
    assert "fmri.nii.gz" in str(err.value)


@pytest.mark.parametrize(("units", "factor"), [("micron", 1e-3), ("meter", 1e3), ("mm", 1.0)])
def test_spatial_units_are_converted_to_mm(tmp_path, synth, units, factor):
    raw, aff = _variant("lps")
    vol = read_volume(synth.make_nifti(tmp_path / "u.nii", raw, aff, units=units))
    np.testing.assert_allclose(vol.spacing, np.array(SPACING) * factor, rtol=1e-6)


def test_nifti2_reads_and_writes_nifti2(tmp_path, synth):
    raw, aff = _variant("permuted_sag")
    src = synth.make_nifti(tmp_path / "v2.nii.gz", raw, aff, version=2)
    vol = read_volume(src)
    np.testing.assert_array_equal(vol.data, _reference())
    out = write_labels(tmp_path / "l2.nii.gz", vol.data > 250, like=vol)
    written = nib.load(out)
    assert isinstance(written, nib.Nifti2Image)
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), raw > 250)


def test_labels_over_255_are_written_as_uint16(tmp_path, synth):
    raw, aff = _variant("lps")
    vol = read_volume(synth.make_nifti(tmp_path / "a.nii", raw, aff))
    out = write_labels(tmp_path / "many.nii", vol.data.astype(np.int32), like=vol)
    assert nib.load(out).get_data_dtype() == np.uint16
    np.testing.assert_array_equal(read_volume(out).data, vol.data)


def test_labels_without_like_get_an_axis_aligned_unit_grid(tmp_path):
    labels = (_reference() % 3).astype(np.uint8)
    out = write_labels(tmp_path / "plain.nii.gz", labels)
    back = read_volume(out)
    np.testing.assert_array_equal(back.data, labels)
    assert back.spacing == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.zeros((5, 6, 7), np.float32), "integers"),
        (np.full((5, 6, 7), -1, np.int16), "0..65535"),
        (np.full((5, 6, 7), 70000, np.int32), "0..65535"),
        (np.zeros((5, 6, 8), np.uint8), "does not match"),
    ],
)
def test_bad_labels_are_refused_and_nothing_is_written(tmp_path, synth, labels, match):
    raw, aff = _variant("lps")
    vol = read_volume(synth.make_nifti(tmp_path / "a.nii", raw, aff))
    with pytest.raises(ImageWriteError, match=match) as err:
        write_labels(tmp_path / "bad.nii.gz", labels, like=vol)
    assert "bad.nii.gz" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii"]


def _valid_bytes(synth, tmp_path, name: str) -> bytes:
    raw, aff = _variant("ras")
    return synth.make_nifti(tmp_path / name, raw, aff).read_bytes()


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_truncated_file(tmp_path, synth, suffix):
    data = _valid_bytes(synth, tmp_path, "ok" + suffix)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut") as err:
        read_volume(path)
    assert "truncated" in str(err.value) or "corrupt" in str(err.value)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_garbage_and_empty_files(tmp_path, suffix):
    garbage, empty = tmp_path / f"garbage{suffix}", tmp_path / f"empty{suffix}"
    garbage.write_bytes(np.random.default_rng(1).bytes(2000))
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match=f"garbage\\{suffix}"):
        read_volume(garbage)
    with pytest.raises(ImageReadError, match="empty") as err:
        read_volume(empty)
    assert f"empty{suffix}" in str(err.value)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_absurd_nifti1_dimensions_are_refused_before_allocating(tmp_path, synth, suffix):
    buf = bytearray(_valid_bytes(synth, tmp_path, "ok.nii"))
    struct.pack_into("<4h", buf, 40, 3, 32767, 32767, 32767)
    path = tmp_path / f"huge{suffix}"
    path.write_bytes(gzip.compress(bytes(buf)) if suffix == ".nii.gz" else bytes(buf))
    with pytest.raises(ImageReadError, match="32767 x 32767 x 32767") as err:
        read_volume(path)
    assert "huge" in str(err.value) and "corrupt" in str(err.value)


def test_absurd_nifti2_dimensions_are_refused(tmp_path, synth):
    raw, aff = _variant("lps")
    buf = bytearray(synth.make_nifti(tmp_path / "ok2.nii", raw, aff, version=2).read_bytes())
    struct.pack_into("<4q", buf, 16, 3, 100000, 100000, 100000)
    path = tmp_path / "huge2.nii"
    path.write_bytes(bytes(buf))
    with pytest.raises(ImageReadError, match="100000 x 100000 x 100000.*huge2|huge2.*100000"):
        read_volume(path)


def test_dims_slightly_too_big_for_the_file_say_truncated(tmp_path, synth):
    buf = bytearray(_valid_bytes(synth, tmp_path, "ok.nii"))
    struct.pack_into("<h", buf, 46, 50)  # dim[3]: 5 -> 50 slices
    path = tmp_path / "short.nii"
    path.write_bytes(bytes(buf))
    with pytest.raises(ImageReadError, match="truncated") as err:
        read_volume(path)
    assert "short.nii" in str(err.value)


def test_colour_nifti_is_refused(tmp_path):
    rgb = np.zeros((4, 5, 3), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    path = tmp_path / "rgb.nii"
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), path)
    with pytest.raises(ImageReadError, match="rgb.nii.*colour"):
        read_volume(path)
