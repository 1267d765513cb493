"""The fine-tuning job behind the Review and Fine-tune widget: checks, labels copy, worker.

Everything here runs without the widget's Qt objects: :func:`prepare_round` checks a request
and gathers what the worker needs on the main thread (:func:`copy_training_labels` copies the
training slices), :func:`finetune_work` is the generator the napari thread worker runs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_fcnseg.core.review import ReviewState
from napari_fcnseg.core.slices import slice_index
from napari_fcnseg.layer_keys import MODALITY_KEY

from ._common import image_array, notify_info, validate_image_layer
from ._finetune_form import parse_class_names
from ._slice_review import FinetuneError
from ._strokes import StrokeTracker, strokes_only

if TYPE_CHECKING:
    from napari.layers import Image, Labels

    from napari_fcnseg.core.finetune import FinetuneSettings
    from napari_fcnseg.core.store import ModelStore


def copy_training_labels(image: Image, labels: Labels, slices: list[int]
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


def prepare_round(store: ModelStore, image: Image, labels: Labels, slices: list[int],
                  state: ReviewState | None, *, base: str, any_models: bool, name: str,
                  classes_text: str, settings: FinetuneSettings,
                  strokes: StrokeTracker | None) -> dict[str, Any]:
    """Check a fine-tuning request and gather everything the worker needs.

    Parameters
    ----------
    store : ModelStore
        Where the base model is and the new one goes.
    image, labels : napari layers
        The chosen image and labels layers (either may be None or of another kind).
    slices : list of int
        The slices to learn from.
    state : ReviewState or None
        The labels layer's review state.
    base : str
        The base model's name ("" when none is chosen).
    any_models : bool
        Whether any model is listed to start from (for the message when none is chosen).
    name : str
        The new model's name as typed.
    classes_text : str
        The class names as typed (empty: the labels' or the base model's).
    settings : FinetuneSettings
        The round's settings.
    strokes : StrokeTracker or None
        What was painted, when only the strokes are to be learned from.

    Returns
    -------
    dict
        ``image``, ``labels``, ``ignore_label``, ``slices``, ``class_names``, ``settings``,
        ``modality``, ``base``, ``name`` and ``image_name``.

    Raises
    ------
    FinetuneError
        In plain words, for anything that keeps the round from starting.
    """
    from napari_fcnseg.core.finetune import learns_new_classes
    from napari_fcnseg.core.store import ModelError, sanitize_name

    data, used = copy_training_labels(image, labels, slices)
    if not base:
        raise FinetuneError("Choose a base model to start from." if any_models
                            else "No stored model is available to start from; import one "
                            "in the Models panel.")
    try:
        name = sanitize_name(name.strip())
        taken = [n for n in store.names() if n.casefold() == name.casefold()]
        if taken:
            raise ModelError(f"a model named '{taken[0]}' already exists; choose another name")
        info = {i.name: i for i in store.list()}.get(base)
        if info is None or not info.available:
            raise ModelError(f"model '{base}' is not in the store or its weights are missing")
    except (ModelError, OSError) as exc:
        raise FinetuneError(f"Cannot fine-tune: {exc}") from exc
    model_classes = list(info.metadata.get("classes", []))
    try:
        typed = parse_class_names(classes_text)
    except ValueError as exc:
        raise FinetuneError(f"Class names: {exc}.") from None
    names = typed or list(state.classes if state and state.classes else model_classes)
    top = int(used.max())
    if typed and top >= len(typed):
        raise FinetuneError(f"'{labels.name}' uses label value {top}, but only "
                            f"{len(typed)} class names are given; add a name for it.")
    if top >= len(names):
        names += [f"class {c}" for c in range(len(names), top + 1)]
    if len(names) != len(model_classes):
        notify_info(f"The labels use {len(names)} classes ({', '.join(names)}) but model "
                    f"'{base}' knows {len(model_classes)}; fine-tuning gives it a new "
                    "output layer for them and keeps what it learned.")
    ignore = None
    if strokes is not None:
        data, ignore = strokes_only(data, slices, strokes, set(state.reviewed)
                                    if state else set())
    marked = data.reshape(-1, *data.shape[-2:])[slices]
    drawn = np.unique(marked if ignore is None else marked[marked != ignore]).tolist()
    # steps and rate left to the task are fixed here, so the bar and the curve know the length
    settings = settings.for_task(learns_new_classes(drawn, names, model_classes,
                                                    len(model_classes)))
    return {"image": image_array(image), "labels": data, "ignore_label": ignore,
            "slices": slices, "class_names": names, "settings": settings,
            "modality": str(image.metadata.get(MODALITY_KEY, "auto")),
            "base": base, "name": name, "image_name": image.name}


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


def save_result(store: ModelStore, result: Any, job: dict[str, Any]) -> str:
    """Save the round's model with its card (main thread); return the name it got.

    ``result`` is a FinetuneResult, possibly the model handed out before its held-out check;
    ``job`` is what :func:`prepare_round` gathered (``name``, ``base``, ``image_name``).

    Raises
    ------
    ModelError, OSError
        When the model cannot be written.
    """
    meta = {**result.metadata(parent=job["base"]), "image": job["image_name"]}
    return store.save(result.net, job["name"], meta).name


def update_card(store: ModelStore, result: Any, job: dict[str, Any], saved: str) -> bool:
    """Rewrite the card of the model saved as ``saved`` before its held-out check.

    Returns False (nothing written) when the model was renamed or deleted meanwhile.

    Raises
    ------
    ModelError, OSError
        When the model cannot be written.
    """
    if saved not in store.names():
        return False
    meta = {**result.metadata(parent=job["base"]), "image": job["image_name"]}
    store.save(result.net, saved, meta, overwrite=True)  # the same weights, the new card
    return True


def keep_unchecked(store: ModelStore, ready: tuple[str, Any], job: dict[str, Any]) -> str:
    """Keep the model saved before its held-out check when the check is cancelled.

    Its card says the check was cancelled; returns the message for the person.
    """
    from napari_fcnseg.core.store import ModelError

    saved, result = ready
    try:
        update_card(store, replace(result, pending="the held-out check was cancelled"), job,
                    saved)
    except (ModelError, OSError):
        pass  # the card keeps "has not finished", which is as true
    return (f"Held-out check cancelled; '{saved}' is saved and selected, without a held-out "
            "estimate.")
