"""Damaged files: every reader returns a Volume or raises ImageReadError, nothing else.

A valid small file of each format is made here, then random bytes are overwritten (biased
towards the headers) and the file is cut at random offsets.
"""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_fcnseg.io import ImageReadError, Volume, read_volume, write_image

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom complains loudly

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

_SPECIAL = st.sampled_from([b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\x7f", b"\x00" * 4])


@st.composite
def damage(draw, size: int, header: int) -> tuple[list[tuple[int, bytes]], int | None]:
    """Byte overwrites (half of them in the first ``header`` bytes) and an optional cut."""
    offset = st.one_of(st.integers(0, min(header, size) - 1), st.integers(0, size - 1))
    patch = st.one_of(_SPECIAL, st.binary(min_size=1, max_size=8))
    edits = draw(st.lists(st.tuples(offset, patch), max_size=6))
    cut = draw(st.one_of(st.none(), st.integers(0, size - 1)))
    return edits, cut


def _damaged(data: bytes, edits: list[tuple[int, bytes]], cut: int | None) -> bytes:
    buf = bytearray(data)
    for offset, patch in edits:
        buf[offset : offset + len(patch)] = patch
    return bytes(buf[:cut] if cut is not None else buf)


def _check(path) -> None:
    try:
        vol = read_volume(path)
    except ImageReadError as err:
        assert path.name in str(err) or path.parent.name in str(err)
        return
    assert isinstance(vol, Volume) and isinstance(vol.data, np.ndarray)
    assert vol.data.ndim in (2, 3) and len(vol.spacing) == vol.data.ndim


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def nifti_bytes(workdir):
    import nibabel as nib

    aff = np.array([[0, 0, -2.5, 10], [-0.8, 0, 0, 20], [0, 1.2, 0, -5], [0, 0, 0, 1.0]])
    raw = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    return nib.Nifti1Image(raw, aff).to_bytes()


@pytest.fixture(scope="module")
def tiff_bytes(workdir):
    data = np.arange(3 * 6 * 5, dtype=np.uint16).reshape(3, 6, 5)
    return write_image(workdir / "valid.tif", data, spacing=(2.0, 0.5, 0.5)).read_bytes()


@pytest.fixture(scope="module")
def dicom_folder(workdir, synth):
    raw = np.arange(3 * 6 * 5, dtype=np.int16).reshape(3, 6, 5)
    _, paths = synth.make_series(workdir / "dicom_src", raw)
    return paths


def test_valid_files_read(nifti_bytes, tiff_bytes, dicom_folder, workdir):
    (workdir / "ok.nii").write_bytes(nifti_bytes)
    assert read_volume(workdir / "ok.nii").data.shape == (5, 6, 4)  # (S, P, L)
    assert read_volume(workdir / "valid.tif").data.shape == (3, 6, 5)
    assert read_volume(dicom_folder[0].parent).data.shape == (3, 6, 5)


@FUZZ
@given(data=st.data())
def test_damaged_nifti(nifti_bytes, workdir, data):
    edits, cut = data.draw(damage(len(nifti_bytes), 352))
    damaged = _damaged(nifti_bytes, edits, cut)
    (workdir / "fuzz.nii").write_bytes(damaged)
    _check(workdir / "fuzz.nii")


@FUZZ
@given(data=st.data())
def test_damaged_nifti_gz(nifti_bytes, workdir, data):
    # damage the NIfTI inside, recompress: exercises the header checks behind gzip
    edits, cut = data.draw(damage(len(nifti_bytes), 352))
    gz = gzip.compress(_damaged(nifti_bytes, edits, None), mtime=0)
    (workdir / "fuzz.nii.gz").write_bytes(gz if cut is None else gz[: cut % len(gz)])
    _check(workdir / "fuzz.nii.gz")


@FUZZ
@given(data=st.data())
def test_damaged_tiff(tiff_bytes, workdir, data):
    edits, cut = data.draw(damage(len(tiff_bytes), 400))
    (workdir / "fuzz.tif").write_bytes(_damaged(tiff_bytes, edits, cut))
    _check(workdir / "fuzz.tif")


@FUZZ
@given(data=st.data())
def test_damaged_dicom(dicom_folder, workdir, data):
    victim = dicom_folder[1].read_bytes()
    edits, cut = data.draw(damage(len(victim), 600))
    folder = workdir / "dicom_fuzz"
    if not folder.exists():
        shutil.copytree(dicom_folder[0].parent, folder)
    target = folder / dicom_folder[1].name
    target.write_bytes(_damaged(victim, edits, cut))
    _check(target)  # the damaged file itself, with its intact siblings
    _check(folder)  # the folder: the damaged file may be skipped, or break the series
