"""What the Segment widget checks before it starts: the image, the slices, the model, the labels.

Everything is checked on the main thread, before a worker starts, so a refused request fails
at once with a message that says why; the model itself is loaded in the worker (about 0.1 s),
the first time it is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_fcnseg.core.arrays import is_lazy
from napari_fcnseg.core.slices import slice_count

from ._common import current_slice, find_labels_layer, validate_image_layer

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

    from napari_fcnseg.core.store import ModelStore


class SegmentError(RuntimeError):
    """A segmentation could not start or finish; the message says why in plain words."""


def model_classes(store: ModelStore, name: str, loaded: dict[str, Any]) -> list[str]:
    """Class names of stored model ``name``, from its card (or ``loaded[name]`` when held).

    Raises
    ------
    SegmentError
        If the store cannot be read, has no such model, or lacks its weights.
    """
    from napari_fcnseg.core.store import ModelError

    if name in loaded:
        return loaded[name].class_names
    try:
        info = {info.name: info for info in store.list()}.get(name)
    except (ModelError, OSError) as exc:
        raise SegmentError(f"Cannot read the model store: {exc}") from exc
    if info is None:
        raise SegmentError(f"There is no model named '{name}'.")
    if not info.available:
        raise SegmentError(f"Cannot load model '{name}': its weights file is missing.")
    return [str(c) for c in info.metadata.get("classes", [])]


def check_request(viewer: napari.Viewer, image: Image | None, scope: str,
                  slices: list[int] | None, model: str,
                  classes_of: Callable[[str], list[str]]) -> tuple[list[str], list[int] | None]:
    """Validate a request to segment ``image`` with ``model``.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer holding the image (and maybe its labels layer already).
    image : napari.layers.Image or None
        The chosen image layer.
    scope : {"volume", "slice"}
        The whole image, or the slice the viewer shows.
    slices : list of int or None
        Explicit slices; they override ``scope``.
    model : str
        Name of the chosen model ("" when there is none).
    classes_of : callable
        ``classes_of(model)`` gives the model's class names or raises :class:`SegmentError`.

    Returns
    -------
    classes : list of str
        The model's class names.
    slices : list of int or None
        The slices to segment, ascending; None for the whole volume.

    Raises
    ------
    SegmentError
        In plain words, for anything that keeps the request from running.
    """
    problem = validate_image_layer(image)
    if problem or image is None:
        raise SegmentError(problem or "Choose an image layer to segment first.")
    shape = tuple(image.data.shape)
    n = slice_count(shape)
    if slices is not None:
        slices = sorted({int(k) for k in slices})
        if not slices or slices[0] < 0 or slices[-1] >= n:
            raise SegmentError(f"Slices must lie between 0 and {n - 1}.")
    elif scope == "slice":
        slices = [current_slice(viewer, image)]
    elif scope != "volume":
        raise SegmentError(f"Unknown scope '{scope}'; use 'volume' or 'slice'.")
    if not model:
        raise SegmentError("No model is available; import or train one in the Models panel.")
    classes = classes_of(model)
    labels = find_labels_layer(viewer, image)
    if labels is not None:
        lazy = is_lazy(labels.data)  # a zarr store: too big to scan for its largest label
        if not (isinstance(labels.data, np.ndarray) or lazy) or np.dtype(
                labels.data.dtype).kind not in "iu":
            raise SegmentError(f"'{labels.name}' is not an integer labels array; "
                               "rename or delete it to segment into a new layer.")
        top = 0 if lazy or not labels.data.size else int(labels.data.max())
        if top >= len(classes):
            raise SegmentError(
                f"'{labels.name}' contains label {top}, but model '{model}' knows only "
                f"{len(classes)} classes ({', '.join(classes)}). Choose a model with "
                "matching classes, or rename the labels layer to start a new one.")
    return classes, slices
