"""Cohort batches on Dask give the same files, byte for byte, as the serial loop."""

import hashlib

import pytest
import tifffile
import torch

from napari_fcnseg.cli import main
from napari_fcnseg.core.nets import NetworkConfig, build_network
from napari_fcnseg.core.phantoms import CLASS_NAMES, generate_volume
from napari_fcnseg.core.store import ModelStore

distributed = pytest.importorskip("distributed")


@pytest.fixture
def cohort(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_FCNSEG_MODEL_DIR", str(tmp_path / "models"))
    torch.manual_seed(0)
    ModelStore().save(build_network(NetworkConfig(base=4, depth=2)), "tiny",
                      {"classes": list(CLASS_NAMES)})
    cases = tmp_path / "cases"
    cases.mkdir()
    for i in range(3):
        tifffile.imwrite(cases / f"c{i}.tif", generate_volume("CT", (4, 32, 32), i).image,
                         photometric="minisblack")
    (cases / "bad.tif").write_bytes(b"not an image")
    return cases


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_dask_outputs_equal_serial_outputs_byte_for_byte(cohort, tmp_path, capsys):
    assert main(["predict", str(cohort), str(tmp_path / "serial"), "--model", "tiny"]) == 1
    serial = _digests(tmp_path / "serial")
    assert sorted(serial) == ["c0_labels.tif", "c1_labels.tif", "c2_labels.tif"]
    capsys.readouterr()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        code = main(["predict", str(cohort), str(tmp_path / "dask"), "--model", "tiny",
                     "--scheduler", cluster.scheduler_address])
        err = capsys.readouterr().err
        assert code == 1 and "skipped bad.tif" in err  # the bad case is reported, not fatal
        assert _digests(tmp_path / "dask") == serial
        # connecting again by address reuses the workers' network (built once per worker)
        assert main(["predict", str(cohort), str(tmp_path / "again"), "--model", "tiny",
                     "--scheduler", cluster.scheduler_address]) == 1
        assert _digests(tmp_path / "again") == serial


def test_workers_starts_an_embedded_cluster(cohort, tmp_path, capsys):
    code = main(["predict", str(cohort), str(tmp_path / "out"), "--model", "tiny",
                 "--workers", "2"])
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "c0_labels.tif", "c1_labels.tif", "c2_labels.tif"]
    assert "segmented 3 of 4 cases" in capsys.readouterr().out


def test_unreachable_scheduler_is_one_plain_line(cohort, tmp_path, capsys):
    code = main(["predict", str(cohort), str(tmp_path / "out"), "--model", "tiny",
                 "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the Dask scheduler" in err
    assert not any((tmp_path / "out").glob("*_labels.tif"))
