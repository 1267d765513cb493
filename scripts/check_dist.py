"""Check what the built source archive and wheel carry (run by scripts/installed_check.sh).

    python scripts/check_dist.py dist/napari_fcnseg-X.tar.gz dist/napari_fcnseg-X-py3-none-any.whl

The sdist must hold every test file and sample volume of the source tree (packagers run the
tests from it) and both archives every model file under ``napari_fcnseg/core/weights`` (each
``*.pt`` with its ``*.json`` card). Exits non-zero, naming the missing files, otherwise.
"""

import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Folders copied whole into the sdist (MANIFEST.in), and the weights (package data).
SDIST_TREES = ("tests", "tests_installed", "sample_data")
WEIGHTS = "napari_fcnseg/core/weights"


def source_files(folder: str) -> set[str]:
    """Files under ``folder`` of the source tree, as relative POSIX paths (no caches)."""
    return {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
    }


def weight_files() -> set[str]:
    """Every model file of the package (``*.pt``, ``*.json``): they must all be shipped."""
    found = {p for p in source_files(WEIGHTS) if p.endswith((".pt", ".json"))}
    if not any(p.endswith(".pt") for p in found):
        sys.exit(f"no *.pt under {WEIGHTS}: nothing to check against")
    return found


def sdist_names(path: str) -> set[str]:
    """Member files of an sdist, without its top folder (``napari_fcnseg-0.1.0/``)."""
    with tarfile.open(path) as tar:
        return {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile() and "/" in m.name}


def main(sdist: str, wheel: str) -> None:
    weights = weight_files()
    wanted = weights.union(*(source_files(t) for t in SDIST_TREES))
    problems = []
    missing = sorted(wanted - sdist_names(sdist))
    if missing:
        problems.append(f"the sdist lacks {len(missing)} file(s): " + ", ".join(missing[:20]))
    missing = sorted(weights - set(zipfile.ZipFile(wheel).namelist()))
    if missing:
        problems.append("the wheel lacks " + ", ".join(missing))
    if problems:
        sys.exit("\n".join(problems))
    print(f"sdist: {len(wanted)} test, sample and weight files; wheel: {len(weights)} weight files")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
