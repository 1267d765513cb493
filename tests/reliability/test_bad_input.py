"""Run the bad-input matrix (cases.py) through the command line, as a user would."""

import hashlib
import os
from pathlib import Path

import pytest

from napari_fcnseg.cli import main

from .cases import CASES, matrix_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
ROOT = os.name == "posix" and hasattr(os, "geteuid") and os.geteuid() == 0


def _snapshot(folder: Path) -> dict[str, str]:
    """Digest of every regular file under ``folder`` (pipes and links are skipped)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path, store, capsys, monkeypatch):
    if case.posix_root and not ROOT:
        pytest.skip("needs a POSIX machine run as root")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # a payload that runs would leave pwned.txt here
    args = case.build(work)
    inputs = _snapshot(work)
    models_before = _snapshot(tmp_path / "models")
    capsys.readouterr()
    code = main(args)
    out = capsys.readouterr()
    errors = [line for line in out.err.splitlines() if line.startswith("napari-fcnseg: error")]
    assert code == case.code, out.err
    assert "Traceback" not in out.err and "Traceback" not in out.out
    if case.code == 2:
        assert len(errors) == 1, out.err
        assert case.words.lower() in errors[0].lower(), errors[0]
        assert ".tmp" not in errors[0]  # no temporary file names in messages
    elif case.words:
        assert case.words.lower() in out.err.lower(), out.err
    after = _snapshot(work)
    for name, digest in inputs.items():  # every input byte for byte unchanged
        assert after.get(name) == digest, f"{name} was changed or removed"
    new = set(after) - set(inputs)
    assert new == set(case.outputs), f"unexpected files {sorted(new - set(case.outputs))}"
    assert not (work / "pwned.txt").exists()
    if not case.store_changes:
        assert _snapshot(tmp_path / "models") == models_before
    assert not list(tmp_path.parent.glob("evil*"))


def test_the_matrix_document_is_current():
    assert len(CASES) >= 60
    assert DOC.read_text(encoding="utf-8") == matrix_markdown(), (
        "run: python -m tests.reliability.cases")
