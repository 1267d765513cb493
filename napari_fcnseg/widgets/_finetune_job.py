"""The fine-tuning job behind the Review and Fine-tune widget: checks, labels copy, worker.

Everything here runs without the widget's Qt objects: :func:`copy_training_labels` checks the
chosen layers and copies the training slices on the main thread, :func:`finetune_work` is the
generator the napari thread worker runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from napari_fcnseg.core.review import slice_index

from ._common import validate_image_layer
from ._slice_review import FinetuneError

if TYPE_CHECKING:
    from napari_fcnseg.core.store import ModelStore


def copy_training_labels(image: Any, labels: Any, slices: list[int]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Check the image and labels layers; copy the labels of the training slices.

    Returns
    -------
    data : numpy.ndarray
        Labels of the layer's shape, the training slices copied in, other slices 0.
    used : numpy.ndarray
        The training slices, (S, Y, X).

    Raises
    ------
    FinetuneError
        In plain words, when a layer is missing, empty, of another shape, or the labels use
        values outside 0..255.
    """
    from napari.layers import Image, Labels

    from napari_fcnseg.core.finetune import MAX_LABEL  # predictions are stored as uint8

    if not isinstance(labels, Labels):
        raise FinetuneError("Choose a labels layer (your corrected segmentation) first.")
    problem = validate_image_layer(image) if isinstance(image, Image) else (
        "Choose the image layer the labels were drawn on first.")
    if problem:
        raise FinetuneError(problem)
    if labels.data.ndim < 2 or not labels.data.size:
        raise FinetuneError(f"'{labels.name}' holds no labels (shape {labels.data.shape}).")
    if tuple(image.data.shape) != tuple(labels.data.shape):
        raise FinetuneError(
            f"'{image.name}' {tuple(image.data.shape)} and '{labels.name}' "
            f"{tuple(labels.data.shape)} differ in shape; choose the labels drawn on this "
            "image.")
    if not slices:
        raise FinetuneError("Nothing to learn from yet: correct some slices, or mark slices "
                            "that are already right as reviewed.")
    # a copy, as the user may keep painting meanwhile; of the training slices only, since
    # copying a whole 512x512x100 volume alone held up the viewer for ~40 ms
    data = np.zeros(labels.data.shape, labels.data.dtype)  # untouched pages cost nothing
    shape = tuple(data.shape)
    for idx in (slice_index(shape, k) for k in slices):
        data[idx] = labels.data[idx]
    used = data.reshape(-1, *data.shape[-2:])[slices]
    if used.min() < 0 or used.max() > MAX_LABEL:
        raise FinetuneError(f"'{labels.name}' uses label values outside 0..{MAX_LABEL}; "
                            "classes must be numbered 1, 2, 3, ...")
    return data, used


def finetune_work(store: ModelStore, base: str, image: np.ndarray, labels: np.ndarray,
                  **kwargs: Any):
    """Generator run in the worker thread: load ``base`` from ``store``, then fine-tune it."""
    from napari_fcnseg.core.finetune import finetune_iter
    from napari_fcnseg.core.store import ModelError

    try:  # loading takes ~0.1 s: off the main thread, so the viewer does not pause
        model = store.load(base)
    except (ModelError, OSError) as exc:
        raise FinetuneError(f"Cannot load model '{base}': {exc}") from exc
    try:
        return (yield from finetune_iter(model.net, image, labels,
                                         base_class_names=model.class_names, **kwargs))
    except RuntimeError as exc:  # e.g. torch failures; see FinetuneError
        raise FinetuneError(str(exc)) from exc
