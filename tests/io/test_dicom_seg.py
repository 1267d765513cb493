"""DICOM SEG out: references its source series and gives back the same voxels."""

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from napari_fcnseg.io import ImageWriteError, read_volume
from napari_fcnseg.io.dicom_seg import segment_codes, write_dicom_seg

from .conftest import make_series

hd = pytest.importorskip("highdicom")

STUDY = dict(PatientID="P1", PatientName="Test^Patient", PatientBirthDate="19700101",
             PatientSex="O", StudyDate="20260101", StudyTime="120000", AccessionNumber="A1",
             ReferringPhysicianName="", StudyID="1", SeriesNumber=3,
             Manufacturer="test")


def _series(tmp_path, iop=(1, 0, 0, 0, 1, 0)):
    raw = np.random.default_rng(0).integers(0, 2000, (6, 20, 24)).astype(np.int16)
    attrs = dict(STUDY, StudyInstanceUID=generate_uid(), FrameOfReferenceUID=generate_uid())
    _, paths = make_series(tmp_path / "ct", raw, spacing=(3.0, 0.7, 0.9), iop=iop, seed=4,
                           **attrs)
    return read_volume(tmp_path / "ct"), paths


@pytest.mark.parametrize("iop", [(1, 0, 0, 0, 1, 0), (0, 1, 0, 0, 0, -1)])
def test_seg_round_trips_on_a_shuffled_anisotropic_series(tmp_path, iop):
    vol, paths = _series(tmp_path, iop)
    # labels drawn from the displayed image itself, so the truth can be read off the source
    # files independently of any reorientation: 1 where HU > 500, 3 where HU < -800
    labels = np.zeros(vol.data.shape, np.uint8)
    labels[vol.data > 500] = 1
    labels[vol.data < -800] = 3  # no class 2: segment numbers stay 1..k
    out = write_dicom_seg(tmp_path / "seg.dcm", labels, vol,
                          ["background", "liver", "vessel", "tumour"], "my-model", "0.1.0")
    seg = hd.seg.segread(out)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "tumour"]
    assert seg.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert "my-model" in algorithm.AlgorithmName and algorithm.AlgorithmVersion == "0.1.0"
    sources = [pydicom.dcmread(p) for p in paths]
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    uids = [s.SOPInstanceUID for s in sources]
    stack = seg.get_pixels_by_source_instance(uids, segment_numbers=[1, 2],
                                              combine_segments=True, skip_overlap_checks=True)
    hu = np.stack([s.pixel_array.astype(np.int32) * float(s.RescaleSlope)
                   + float(s.RescaleIntercept) for s in sources])
    expected = np.where(hu > 500, 1, np.where(hu < -800, 3, 0))
    np.testing.assert_array_equal(np.where(stack == 2, 3, stack), expected)


def test_seg_needs_a_dicom_source_and_some_labels(tmp_path):
    vol, _ = _series(tmp_path)
    with pytest.raises(ImageWriteError, match="empty"):
        write_dicom_seg(tmp_path / "s.dcm", np.zeros(vol.data.shape, np.uint8), vol)
    nifti_like = type(vol)(data=vol.data, spacing=vol.spacing, path=vol.path, format="nifti")
    with pytest.raises(ImageWriteError, match="DICOM series"):
        write_dicom_seg(tmp_path / "s.dcm", np.ones(vol.data.shape, np.uint8), nifti_like)
    assert not (tmp_path / "s.dcm").exists()


def test_class_names_map_to_snomed_codes():
    assert segment_codes("liver")[1].value == "10200004"
    assert segment_codes("Tumour core")[1].value == "108369006"
    assert segment_codes("lesion")[1].value == "52988006"
    assert segment_codes("class 7")[1].value == "85756007"  # the documented default: Tissue


def test_cli_predict_writes_a_seg_for_a_dicom_series(tmp_path, monkeypatch, capsys):
    from napari_fcnseg.cli import main
    from napari_fcnseg.core.nets import NetworkConfig, build_network
    from napari_fcnseg.core.store import ModelStore

    monkeypatch.setenv("NAPARI_FCNSEG_MODEL_DIR", str(tmp_path / "models"))
    net = build_network(NetworkConfig(base=4, depth=2))
    with_bias = net.head.bias.detach()
    with_bias[:] = 0
    with_bias[1] = 5.0  # this head says "organ" everywhere: a SEG with one full segment
    ModelStore().save(net, "tiny", {"classes": ["background", "organ", "lesion"]})
    vol, paths = _series(tmp_path)
    out = tmp_path / "series_seg.dcm"
    code = main(["predict", str(tmp_path / "ct"), str(out), "--model", "tiny"])
    assert code == 0, capsys.readouterr().err
    seg = hd.seg.segread(out)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["organ"]
    assert seg.SeriesInstanceUID != pydicom.dcmread(paths[0]).SeriesInstanceUID
    name = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmName
    assert "tiny" in name
    code = main(["predict", str(tmp_path / "ct"), str(tmp_path / "x.nii.gz"), "--format",
                 "dicom-seg", "--model", "tiny"])
    assert code != 0 and ".dcm" in capsys.readouterr().err


def test_napari_save_of_labels_on_a_dicom_series_writes_a_seg(tmp_path):
    from napari_fcnseg._reader import get_reader
    from napari_fcnseg._writer import write_labels
    from napari_fcnseg.class_style import class_features

    _series(tmp_path)
    ((data, attrs, _),) = get_reader(str(tmp_path / "ct"))(str(tmp_path / "ct"))
    labels = (data > 500).astype(np.uint8)
    import pandas as pd

    features = pd.DataFrame(class_features(["background", "liver"]))
    (path,) = write_labels(str(tmp_path / "l.dcm"), labels,
                           {"metadata": attrs["metadata"], "features": features})
    assert hd.seg.segread(path).SegmentSequence[0].SegmentLabel == "liver"
    with pytest.raises(ImageWriteError, match="DICOM series"):
        write_labels(str(tmp_path / "m.dcm"), labels, {"scale": (1, 1, 1)})


def test_cli_says_which_of_two_series_it_segmented(tmp_path, monkeypatch, capsys):
    from napari_fcnseg.cli import main
    from napari_fcnseg.core.nets import NetworkConfig, build_network
    from napari_fcnseg.core.store import ModelStore

    monkeypatch.setenv("NAPARI_FCNSEG_MODEL_DIR", str(tmp_path / "models"))
    ModelStore().save(build_network(NetworkConfig(base=4, depth=2)), "tiny",
                      {"classes": ["background", "organ", "lesion"]})
    raw = np.zeros((5, 16, 16), np.int16)
    make_series(tmp_path / "two", raw, SeriesDescription="big", seed=1)
    make_series(tmp_path / "two", raw[:2], SeriesDescription="small", seed=2)
    code = main(["predict", str(tmp_path / "two"), str(tmp_path / "o.nii.gz"), "--model",
                 "tiny"])
    err = capsys.readouterr().err
    assert code == 0 and "2 DICOM series" in err and "'big' (5 slices)" in err
