"""Synthesizers of small NIfTI, DICOM and TIFF files for the I/O tests (no downloads)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR: a DICOM object without pixels


def make_nifti(
    path: Path,
    raw: np.ndarray,
    affine: np.ndarray | None = None,
    *,
    qcode: int = 1,
    scode: int = 1,
    slope: float | None = None,
    inter: float = 0.0,
    version: int = 1,
    units: str = "mm",
) -> Path:
    """Write ``raw`` exactly as stored voxels; scl_slope/inter patched in the header bytes."""
    affine = np.diag([1.0, 1.0, 1.0, 1.0]) if affine is None else affine
    cls = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    img = cls(raw, affine)
    img.header.set_qform(affine, code=qcode)
    img.header.set_sform(affine, code=scode)
    img.header.set_xyzt_units(units)
    buf = bytearray(img.to_bytes())
    if slope is not None:
        if version == 1:
            struct.pack_into("<ff", buf, 112, slope, inter)
        else:
            struct.pack_into("<dd", buf, 176, slope, inter)
    path = Path(path)
    path.write_bytes(gzip.compress(bytes(buf)) if path.name.endswith(".gz") else bytes(buf))
    return path


def ct_dataset(pixels: np.ndarray, **attrs) -> Dataset:
    """A CT Image Storage data set (Explicit VR Little Endian) holding ``pixels``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = attrs.pop("SOPClassUID", CTImageStorage)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.BitsAllocated = ds.BitsStored = 8 * pixels.dtype.itemsize
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def make_series(
    folder: Path,
    raw: np.ndarray,
    *,
    spacing: tuple[float, float, float] = (2.5, 0.8, 0.6),
    origin: tuple[float, float, float] = (-100.0, -120.0, 30.0),
    iop: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    slope: float = 1.0,
    intercept: float = -1024.0,
    uid: str | None = None,
    seed: int = 0,
    suffix: str = ".dcm",
    positions: list | None = None,
    **attrs,
) -> tuple[str, list[Path]]:
    """Write ``raw`` (slice, row, column) as a series with shuffled names and numbers.

    Slice ``k`` sits at ``origin + k * dz * normal``; returns the SeriesInstanceUID and
    the files in slice order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    uid = uid or generate_uid()
    dz, dy, dx = spacing
    row, col = np.array(iop[:3], float), np.array(iop[3:], float)
    normal = np.cross(row, col)
    numbers = rng.permutation(len(raw)) + 1
    paths = []
    for k, pixels in enumerate(raw):
        ipp = np.asarray(origin) + k * dz * normal if positions is None else positions[k]
        ds = ct_dataset(
            pixels,
            SeriesInstanceUID=uid,
            ImagePositionPatient=[float(v) for v in ipp],
            ImageOrientationPatient=[float(v) for v in iop],
            PixelSpacing=[dy, dx],
            SliceThickness=dz,
            RescaleSlope=slope,
            RescaleIntercept=intercept,
            InstanceNumber=int(numbers[k]),
            **attrs,
        )
        paths.append(save(ds, folder / f"{rng.integers(1 << 40):012x}{suffix}"))
    return uid, paths


def make_sr(path: Path) -> Path:
    """A structured report: valid DICOM, but no image."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SR_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SR_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID = "SR", generate_uid()
    return save(ds, path)


@pytest.fixture(scope="session")
def synth() -> SimpleNamespace:
    """The file synthesizers, usable from hypothesis tests too (session scope)."""
    return SimpleNamespace(
        make_nifti=make_nifti,
        ct_dataset=ct_dataset,
        save=save,
        make_series=make_series,
        make_sr=make_sr,
        dcmread=pydicom.dcmread,
    )
