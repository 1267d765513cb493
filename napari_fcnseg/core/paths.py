"""One guard for every file the plugin writes: never over an input, a device or its own files.

Writers stage a temporary file beside the target and rename it into place. Renaming over a
device node (``/dev/null`` when run as root), a pipe or a socket would replace it with a regular
file; renaming over the input scan would destroy it; renaming into the package would replace the
shipped weights. :func:`check_output_path` refuses all three, in plain words.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent


class OutputPathError(ValueError):
    """The chosen output path would overwrite something that must not be overwritten."""


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_output_path(path: str | Path, inputs: Iterable[str | Path] = (),
                      folder_ok: bool = False) -> Path:
    """Refuse an output path that is an input, not a regular file, or inside the package.

    Parameters
    ----------
    path : str or Path
        Where a file is about to be written.
    inputs : iterable of str or Path
        Files (or folders, such as a DICOM series) the command reads: the output may be none of
        them, and may not lie inside an input folder that is a DICOM series.
    folder_ok : bool
        The output is a folder (a zarr store): an existing folder may be replaced, but
        neither an input nor one inside an input folder.

    Returns
    -------
    Path
        ``path``, unchanged.

    Raises
    ------
    OutputPathError
        Saying why, in plain words.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise OutputPathError(f"{path}: cannot check the output path ({exc.strerror})") from exc
    if mode is not None and stat.S_ISDIR(mode) and not folder_ok:
        raise OutputPathError(f"{path}: a folder with that name exists; choose a file name")
    if mode is not None and not stat.S_ISDIR(mode) and folder_ok:
        raise OutputPathError(f"{path}: exists and is not a folder; choose another name")
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise OutputPathError(f"{path}: exists and is not a regular file (a device, pipe or "
                              "socket); choose a file path")
    for source in inputs:
        source = Path(source)
        if _same_file(path, source):
            raise OutputPathError(f"{path}: this is an input file; writing there would destroy "
                                  "it, so choose another output name")
        if folder_ok and source.is_dir() and source.resolve() in path.resolve().parents:
            raise OutputPathError(f"{path}: lies inside the input {source}; choose a path "
                                  "outside it")
    resolved = path.resolve()
    if resolved == PACKAGE_DIR or PACKAGE_DIR in resolved.parents:
        raise OutputPathError(f"{path}: lies inside the napari-fcnseg installation; choose a "
                              "path outside it")
    return path
