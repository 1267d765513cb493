"""``predict --reviewed``: reviewed slices kept as they are, and objects anchored to them."""

import numpy as np
import pytest
import tifffile

from napari_fcnseg.cli import main
from napari_fcnseg.core.predict import Prediction

SHAPE = (6, 48, 48)


def _network_output() -> np.ndarray:
    """A tumour (2) through slices 1-4, a stray spot (2) on slice 5, an organ (1) everywhere."""
    out = np.zeros(SHAPE, np.uint8)
    out[:, 30:40, 30:40] = 1
    out[1:5, 5:12, 5:12] = 2
    out[5, 40:43, 2:5] = 2
    return out


@pytest.fixture
def files(store, tmp_path, monkeypatch):
    def fake_predict_iter(net, image, **kwargs):
        return Prediction(_network_output(), None, list(range(SHAPE[0])))
        yield  # a generator, as the real one

    monkeypatch.setattr("napari_fcnseg.core.predict.predict_iter", fake_predict_iter)
    image = tmp_path / "ct.tif"
    tifffile.imwrite(image, np.random.default_rng(0).normal(0, 100, SHAPE).astype(np.int16),
                     photometric="minisblack")
    reviewed = np.zeros(SHAPE, np.uint8)
    reviewed[2, 6:12, 6:12] = 2  # the person's tumour outline on slice 2, a little smaller
    reviewed[2, 30:40, 30:40] = 1
    path = tmp_path / "reviewed.tif"
    tifffile.imwrite(path, reviewed, photometric="minisblack")
    return image, path, reviewed


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_reviewed_slices_are_copied_and_only_the_anchored_tumour_kept(files, tmp_path, capsys):
    image, reviewed_path, reviewed = files
    out = tmp_path / "out.tif"
    code, _, err = run(capsys, "predict", str(image), str(out), "--model", "tiny",
                       "--reviewed", str(reviewed_path), "--reviewed-slices", "0,2",
                       "--only-touching", "lesion")
    assert code == 0, err
    labels = tifffile.imread(out)
    expected = _network_output()
    expected[[0, 2]] = reviewed[[0, 2]]  # reviewed slices, the empty slice 0 included
    expected[5, 40:43, 2:5] = 0  # the spot touches no reviewed tumour
    np.testing.assert_array_equal(labels, expected)
    assert "removed 1 lesion object(s) (9 voxels)" in err
    assert "kept 2 reviewed slice(s)" in err


def test_without_only_touching_every_object_stays(files, tmp_path, capsys):
    image, reviewed_path, reviewed = files
    out = tmp_path / "out.tif"
    code, _, err = run(capsys, "predict", str(image), str(out), "--model", "tiny",
                       "--reviewed", str(reviewed_path))  # default: its non-empty slices
    assert code == 0, err
    expected = _network_output()
    expected[2] = reviewed[2]
    np.testing.assert_array_equal(tifffile.imread(out), expected)


@pytest.mark.parametrize("problem, message", [
    ("output-is-reviewed", "reviewed.tif"),
    ("unknown-class", "'liver' is not a class"),
    ("no-reviewed", "need --reviewed"),
    ("bad-value", "label value 7"),
    ("shape", "differs"),
])
def test_bad_reviewed_options_give_one_plain_line_and_touch_nothing(problem, message, files,
                                                                    tmp_path, capsys):
    image, reviewed_path, reviewed = files
    out = tmp_path / "out.tif"
    args = ["predict", str(image), str(out), "--model", "tiny", "--reviewed", str(reviewed_path)]
    if problem == "output-is-reviewed":
        out = reviewed_path
        args[2] = str(out)
    elif problem == "unknown-class":
        args += ["--only-touching", "liver"]
    elif problem == "no-reviewed":
        args = args[:5] + ["--only-touching", "lesion"]
    elif problem == "bad-value":
        bad = reviewed.copy()
        bad[2, 0, 0] = 7
        tifffile.imwrite(reviewed_path, bad, photometric="minisblack")
    else:
        tifffile.imwrite(reviewed_path, reviewed[:, :40], photometric="minisblack")
    before = reviewed_path.read_bytes()
    code, _, err = run(capsys, *args)
    assert code != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("napari-fcnseg: error:"), err
    assert message in err
    assert reviewed_path.read_bytes() == before
    if out != reviewed_path:
        assert not out.exists()
