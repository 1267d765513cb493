"""DICOM SEG output: labels that go back to PACS, OHIF and 3D Slicer beside their source series.

A SEG object made with highdicom references the source series (its frame of reference and, per
frame, the source image it was drawn on) and holds one segment per class present, named after
the class, with a SNOMED CT category and type:

=========================================  ====================  =======================
class name contains                        category              type
=========================================  ====================  =======================
lesion, tumour/tumor, nodule, metastasis   Lesion (52988006)     Lesion / Neoplasm
a known organ (liver, lung, heart, ...)    Anatomical Structure  that organ
anything else (the documented default)     Tissue (85756007)     Tissue (85756007)
=========================================  ====================  =======================

The algorithm identification names the plugin, its version and the model. Labels are written on
the source geometry: the display orientation is undone and frames follow the source slices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_fcnseg.io.base import ImageWriteError, Volume, atomic_write
from napari_fcnseg.io.orientation import from_display

_LESION_WORDS = ("lesion", "tumour", "tumor", "nodule", "metasta", "cancer", "carcinoma")
_ORGANS = ("Liver", "Lung", "Heart", "Kidney", "Spleen", "Aorta", "Brain", "Bone", "Vertebra",
           "Muscle", "Fat", "Pancreas", "Prostate", "Bladder", "Stomach", "Colon")


def segment_codes(name: str) -> tuple[Any, Any]:
    """(category, type) SNOMED CT codes for a class name; see the module docstring."""
    from pydicom.sr.codedict import codes

    lower = name.lower()
    if any(word in lower for word in _LESION_WORDS):
        kind = codes.SCT.Neoplasm if ("tumo" in lower or "cancer" in lower
                                      or "carcinoma" in lower) else codes.SCT.Lesion
        return codes.SCT.Lesion, kind
    for organ in _ORGANS:
        if organ.lower() in lower:
            try:
                return codes.SCT.AnatomicalStructure, getattr(codes.SCT, organ)
            except AttributeError:
                break
    if "organ" in lower:
        return codes.SCT.AnatomicalStructure, codes.SCT.Organ
    return codes.SCT.Tissue, codes.SCT.Tissue


def _source_frames(labels: np.ndarray, like: Volume) -> np.ndarray:
    """Labels as (frame, row, column), one frame per source slice in the source's order."""
    geometry = like.header or {}
    if geometry.get("is_2d") or labels.ndim == 2:
        return labels.reshape(1, *labels.shape[-2:])
    source = from_display(labels, geometry["ornt"])  # (column, row, slice)
    return np.ascontiguousarray(source.transpose(2, 1, 0))


def write_dicom_seg(path: str | Path, labels: np.ndarray, like: Volume | None,
                    class_names: list[str] | None = None, model_name: str = "",
                    software_version: str = "") -> Path:
    """Write ``labels`` as a DICOM SEG object referencing the DICOM series ``like``.

    Parameters
    ----------
    path : str or Path
        Output file (``.dcm``).
    labels : numpy.ndarray
        Integer labels in the displayed orientation of ``like`` (as napari shows them).
    like : Volume
        The DICOM series the labels were drawn on (from :func:`napari_fcnseg.io.read_volume`).
    class_names : list of str, optional
        Name of every label value; others are called "class N".
    model_name, software_version : str
        Recorded in the algorithm identification.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ImageWriteError
        Without a DICOM source, with labels of another shape, with no label at all, or when
        writing fails.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    path = Path(path)
    if like is None or like.format != "dicom" or not (like.header or {}).get("files"):
        raise ImageWriteError("DICOM SEG needs labels drawn on a DICOM series; save these as "
                              ".nii.gz or .tif instead", path)
    labels = np.asarray(labels)
    if labels.shape != like.data.shape:
        raise ImageWriteError(f"labels of shape {labels.shape} do not fit the series "
                              f"{like.data.shape}", path)
    if labels.dtype.kind not in "iub" or (labels.size and labels.min() < 0):
        raise ImageWriteError("labels must be non-negative integers", path)
    values = [int(v) for v in np.unique(labels) if v > 0]
    if not values:
        raise ImageWriteError("the labels are empty: a DICOM SEG needs at least one segment",
                              path)
    frames = _source_frames(labels, like)
    numbered = np.zeros(frames.shape, np.uint16)  # segment numbers 1..k, in label order
    for number, value in enumerate(values, start=1):
        numbered[frames == value] = number
    try:
        sources = [pydicom.dcmread(f) for f in like.header["files"]]
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise ImageWriteError(f"cannot re-read the source series ({exc})", path) from exc
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"napari-fcnseg {model_name}".strip(), family=codes.DCM.ArtificialIntelligence,
        version=software_version or "unknown")
    names = list(class_names or [])
    descriptions = []
    for number, value in enumerate(values, start=1):
        name = names[value] if value < len(names) else f"class {value}"
        category, kind = segment_codes(name)
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name[:64], segmented_property_category=category,
            segmented_property_type=kind,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=algorithm))
    try:
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=numbered,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=900,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="napari-fcnseg",
            manufacturer_model_name=(model_name or "napari-fcnseg")[:64],
            software_versions=software_version or "unknown", device_serial_number="none",
            content_label="SEGMENTATION", content_description="napari-fcnseg labels",
            omit_empty_frames=True)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ImageWriteError(f"the source series cannot carry a DICOM SEG ({exc})",
                              path) from exc
    return atomic_write(path, lambda tmp: seg.save_as(tmp))
