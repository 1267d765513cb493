"""The sidecar file that lets saved labels be resumed: class names and review state.

Label maps go out as plain NIfTI or TIFF so every other tool reads them. What only this plugin
needs — the class names, which slices a person edited or reviewed, the image the labels were
drawn on — goes into a small JSON file beside them, named after the label file plus
``.fcnseg.json`` (``case_labels.nii.gz`` → ``case_labels.nii.gz.fcnseg.json``)::

    {"format": "napari-fcnseg-labels", "format_version": 1,
     "classes": ["background", "liver", "tumour"],
     "review": {...}, "source": "/data/case.nii.gz"}

``review`` is the plugin's review record as it is kept in the layer's metadata. A label file
without a sidecar still opens (as labels, without names or review state).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from napari_fcnseg.io.base import ImageReadError, atomic_write

SIDECAR_SUFFIX = ".fcnseg.json"
FORMAT = "napari-fcnseg-labels"
FORMAT_VERSION = 1
MAX_SIDECAR_BYTES = 16 * 1024**2


def sidecar_path(labels_path: str | Path) -> Path:
    """Path of the sidecar belonging to the label file ``labels_path``."""
    labels_path = Path(labels_path)
    return labels_path.with_name(labels_path.name + SIDECAR_SUFFIX)


def write_sidecar(labels_path: str | Path, classes: list[str] | None,
                  review: dict[str, Any] | None, source: str | None) -> Path:
    """Write the sidecar of ``labels_path`` atomically and return its path."""
    data = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "classes": [str(c) for c in classes] if classes else None,
            "review": review, "source": source}
    text = json.dumps(data, indent=2)
    path = sidecar_path(labels_path)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def read_sidecar(labels_path: str | Path) -> dict[str, Any] | None:
    """Return the sidecar of ``labels_path`` as a dict, or None when there is none.

    Raises
    ------
    ImageReadError
        When the sidecar exists but is not one (corrupt JSON, another format, too large).
    """
    path = sidecar_path(labels_path)
    if not path.is_file():
        return None
    if path.stat().st_size > MAX_SIDECAR_BYTES:
        raise ImageReadError("the sidecar file is too large to be one", path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ImageReadError(f"the sidecar file is corrupt ({exc})", path) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ImageReadError("not a napari-fcnseg labels sidecar", path)
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise ImageReadError("written by a newer napari-fcnseg; update the plugin", path)
    classes = data.get("classes")
    if classes is not None and (not isinstance(classes, list)
                                or not all(isinstance(c, str) for c in classes)):
        raise ImageReadError("the sidecar's class names are not a list of names", path)
    if data.get("review") is not None and not isinstance(data["review"], dict):
        raise ImageReadError("the sidecar's review record is not an object", path)
    return data
