"""No command may write over an input, a device node or the shipped weights."""

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import tifffile

from napari_fcnseg.cli import main
from napari_fcnseg.core.paths import PACKAGE_DIR, OutputPathError, check_output_path
from napari_fcnseg.core.phantoms import generate_volume
from napari_fcnseg.core.store import ModelStore


@pytest.fixture
def store(store):
    """The shared tiny-model store (tests/conftest.py), with "tiny" as the default model."""
    store.set_default("tiny")
    return store


@pytest.fixture
def scan(tmp_path):
    ph = generate_volume("CT", (5, 32, 32), 1)
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, ph.image, photometric="minisblack")
    return path


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink"])
def test_predict_refuses_to_write_over_its_input(store, scan, capsys, spelling):
    before = _digest(scan)
    out = {"same": scan, "dotdot": scan.parent / ".." / scan.parent.name / scan.name,
           "symlink": scan.parent / "link.tif"}[spelling]
    if spelling == "symlink":
        out.symlink_to(scan)
    code, _, err = _run(capsys, "predict", scan, out)
    assert code != 0 and "input file" in err and len(err.strip().splitlines()) == 1
    assert _digest(scan) == before


def test_probabilities_may_not_be_the_input_the_labels_or_a_png(store, scan, tmp_path, capsys):
    before = _digest(scan)
    out = tmp_path / "out.tif"
    for probs, words in ((scan, "input file"), (out, "same file"),
                         (tmp_path / "p.png", ".tif name")):
        code, _, err = _run(capsys, "predict", scan, out, "--probabilities", probs)
        assert code != 0 and words in err, err
    assert _digest(scan) == before and not out.exists() and not (tmp_path / "p.png").exists()


@pytest.mark.skipif(os.name != "posix" or not Path("/dev/null").exists(), reason="POSIX only")
def test_device_nodes_are_never_replaced(store, scan, tmp_path, capsys):
    code, _, err = _run(capsys, "predict", scan, tmp_path / "o.tif", "--probabilities",
                        "/dev/null")
    assert code != 0 and "not a regular file" in err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    code, _, err = _run(capsys, "models", "export", "tiny", "/dev/null")
    assert code != 0 and "not a regular file" in err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_missing_output_folder_is_refused_before_segmenting(store, scan, tmp_path, capsys):
    code, stdout, err = _run(capsys, "predict", scan, tmp_path / "nope" / "o.tif")
    assert code != 0 and "does not exist" in err and "segmenting" not in err


def test_batch_into_its_own_folder_keeps_the_users_files(store, tmp_path, capsys):
    cases = tmp_path / "cases"
    cases.mkdir()
    ph = generate_volume("CT", (5, 32, 32), 2)
    tifffile.imwrite(cases / "a.tif", ph.image, photometric="minisblack")
    mine = cases / "a_labels.tif"
    tifffile.imwrite(mine, ph.labels, photometric="minisblack")  # the user's own labels
    before = _digest(mine)
    code, _, err = _run(capsys, "predict", cases, cases)
    assert code != 0 and "a.tif" in err and "input file" in err
    assert _digest(mine) == before


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_batch_skips_a_pipe_named_like_an_image(store, tmp_path, capsys):
    cases = tmp_path / "cases"
    cases.mkdir()
    tifffile.imwrite(cases / "a.tif", generate_volume("CT", (5, 32, 32), 2).image,
                     photometric="minisblack")
    os.mkfifo(cases / "x.tif")
    # in a subprocess with a timeout, so a regression hangs this test, not the suite
    res = subprocess.run([sys.executable, "-m", "napari_fcnseg.cli", "predict", str(cases),
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                         env={**os.environ})
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out" / "a_labels.tif").is_file()
    assert not (tmp_path / "out" / "x_labels.tif").exists()


def test_no_export_into_the_package(store, capsys):
    shipped = PACKAGE_DIR / "core" / "weights" / "bundled.pt"
    before = _digest(shipped)
    code, _, err = _run(capsys, "models", "export", "bundled", shipped)
    assert code != 0 and "installation" in err
    assert _digest(shipped) == before
    with pytest.raises(OutputPathError, match="installation"):
        check_output_path(PACKAGE_DIR / "anything.tif")


def test_concurrent_imports_never_replace_each_other(store, tmp_path):
    exported = store.export("tiny", tmp_path / "t.pt")
    script = ("import sys; from napari_fcnseg.core.store import ModelStore; "
              "print(ModelStore().import_model(sys.argv[1]).name)")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(exported)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ}) for _ in range(4)]
    names = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        names.append(out.strip())
    assert len(set(names)) == 4  # every import got its own name
    stored = ModelStore().names()
    assert all(n in stored for n in names)
    for n in names:
        assert ModelStore().load(n).net is not None


def test_empty_model_name_is_refused_not_replaced_by_the_default(store, scan, tmp_path, capsys):
    code, _, err = _run(capsys, "predict", scan, tmp_path / "o.tif", "--model", "")
    assert code != 0 and "--model is empty" in err and not (tmp_path / "o.tif").exists()


def test_a_failed_probabilities_write_leaves_no_labels_behind(store, scan, tmp_path, capsys,
                                                              monkeypatch):
    import napari_fcnseg.cli.predict as cli_predict

    def full_disk(path, probabilities):
        raise OSError("No space left on device")

    monkeypatch.setattr(cli_predict, "_write_probabilities", full_disk)
    code, _, err = _run(capsys, "predict", scan, tmp_path / "o.tif", "--probabilities",
                        tmp_path / "p.tif")
    assert code != 0 and "No space left" in err
    assert not (tmp_path / "o.tif").exists() and not (tmp_path / "p.tif").exists()
