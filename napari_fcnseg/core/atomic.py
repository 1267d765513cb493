"""Atomic file writing: a file is either complete, or it was not written at all.

Every writer of the plugin (the model store, the image writers, the command line) stages its
data in a temporary file beside the target, flushes it to disk and renames it into place, so an
interrupted or failing write never leaves a half-written file, nor destroys the old one.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path


def temporary_name(path: Path) -> Path:
    """A hidden, unique temporary path beside ``path``, ending in its lower-case suffix.

    Writers that choose the format by the file name (``.nii.gz``, ``.tif``) still can.
    """
    name = path.name.lower()
    suffix = ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix
    return path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp{suffix}"


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def atomic_write_files(files: Sequence[tuple[str | Path, Callable[[Path], object]]]) -> None:
    """Write several files so that each is either complete or untouched.

    Each ``write(tmp)`` writes one temporary file beside its target; only when every one of
    them has been written and flushed to disk are they renamed into place.

    Parameters
    ----------
    files : sequence of (path, write)
        Targets and the functions writing their content to a given path.

    Raises
    ------
    BaseException
        Whatever a writer or the file system raised; the temporary files are removed and the
        targets are left as they were.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, write in files:
            path = Path(path)
            tmp = temporary_name(path)
            staged.append((tmp, path))
            write(tmp)
            _fsync(tmp)
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Write one file atomically: ``write(tmp)``, flush, rename to ``path``; return ``path``."""
    atomic_write_files([(path, write)])
    return Path(path)
