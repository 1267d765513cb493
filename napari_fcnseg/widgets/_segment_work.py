"""The Segment widget's worker-thread half: load the model, predict, and hash what it wrote.

Everything here runs off the main thread, so that the viewer stays responsive; the widget
(:mod:`.segment`) merges the outcome into the labels on the main thread.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_fcnseg.core.arrays import as_image, is_lazy

from ._segment_anchor import AnchorRequest, apply_anchor

if TYPE_CHECKING:
    from napari_fcnseg.core.model_card import LoadedModel
    from napari_fcnseg.core.predict import Prediction
    from napari_fcnseg.core.store import ModelStore

#: Folder for the labels of images larger than memory (default: the user cache folder).
LABELS_DIR_ENV = "NAPARI_FCNSEG_LABELS_DIR"

_viewer_warmed = False


def _warm_up_viewer() -> None:
    """Do napari's one-time work for a process's first Labels layer here, off the main thread.

    The first Labels layer makes napari import pandas and build a vispy line-dash atlas and its
    colormaps (about 0.3 s here); done in the worker, the viewer does not stall when the result
    is shown. Only a speed-up: any failure is ignored.
    """
    global _viewer_warmed
    if _viewer_warmed:
        return
    _viewer_warmed = True
    try:
        import pandas  # noqa: F401
        from napari.layers import Labels
        from vispy.visuals.line.dash_atlas import DashAtlas

        Labels(np.zeros((1, 1), np.uint8))
        DashAtlas()
    except Exception:  # noqa: BLE001 - the viewer will simply do it later
        pass


@dataclass
class SegmentOutcome:
    """What the worker hands back.

    Attributes
    ----------
    prediction : napari_fcnseg.core.predict.Prediction
        Labels (and probabilities) of the slices predicted.
    digests : dict of int to str
        Slice -> digest of the predicted labels there (see :mod:`napari_fcnseg.core.review`).
    loaded : LoadedModel or None
        The model, when the worker had to load it (the widget keeps it for the next run).
    entropy : numpy.ndarray or None
        Per-pixel uncertainty (uint8, see :func:`napari_fcnseg.core.predict.entropy_map`),
        when an uncertainty layer was asked for.
    anchor_note : str
        What keeping only the objects that touch reviewed slices removed ("" when not asked).
    """

    prediction: Prediction
    digests: dict[int, str]
    loaded: LoadedModel | None
    entropy: np.ndarray | None = None
    anchor_note: str = ""


def labels_store_dir() -> Path:
    """Where labels of images larger than memory are kept.

    ``$NAPARI_FCNSEG_LABELS_DIR``, else ``labels/`` in the user cache folder.
    """
    import platformdirs

    env = os.environ.get(LABELS_DIR_ENV)
    return Path(env) if env else Path(platformdirs.user_cache_dir("napari-fcnseg")) / "labels"


def new_labels_store(shape: tuple[int, ...], classes: list[str]):
    """A new OME-Zarr labels store (one chunk per slice) in :func:`labels_store_dir`."""
    from napari_fcnseg.io.zarr_io import ZarrLabelsWriter

    folder = labels_store_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return ZarrLabelsWriter(folder / f"labels-{stamp}-{uuid.uuid4().hex[:6]}.zarr", shape,
                            class_names=classes)


def open_labels_store(path: Path):
    """The labels array of a finished store, for a napari Labels layer to paint into."""
    import zarr

    return zarr.open_group(store=str(path), mode="r+")["0"]


def predict_work(store: ModelStore, model: str, loaded: LoadedModel | None, data: Any,
                 slices: list[int] | None, modality: str, probabilities: bool, device: str,
                 batch_size: int | None, uncertainty_layer: bool = False,
                 anchor: AnchorRequest | None = None):
    """Generator run in the worker thread: load the model if needed, normalise, predict, hash.

    ``model`` is loaded from ``store`` unless ``loaded`` (the widget's copy of it) is given.
    With ``anchor``, only the objects of its classes that touch the person's slices are kept
    (see :mod:`._segment_anchor`).
    """
    from napari_fcnseg.core.normalize import fit_normalizer
    from napari_fcnseg.core.predict import entropy_map, predict_iter
    from napari_fcnseg.core.review import slice_digests
    from napari_fcnseg.core.store import ModelError

    _warm_up_viewer()
    fresh = None
    if loaded is None:
        try:
            loaded = fresh = store.load(model)
        except (ModelError, OSError) as exc:
            raise ModelError(f"Cannot load model '{model}': {exc}") from exc
    image = as_image(data)
    store_writer = None
    if is_lazy(image):  # larger than memory: the labels go to a zarr store, not to RAM
        if probabilities or uncertainty_layer:
            raise ValueError("probability and uncertainty layers need the image in memory; "
                             "this one is read from disk on demand")
        store_writer = new_labels_store(tuple(image.shape), list(loaded.class_names))
    normalizer = fit_normalizer(image, modality)
    try:
        prediction = yield from predict_iter(
            loaded.net, image, slices=slices, normalizer=normalizer, batch_size=batch_size,
            probabilities="uint8" if probabilities or uncertainty_layer else None,
            uncertainty=True, device=device,
            out=None if store_writer is None else store_writer.array)
        if store_writer is not None:
            prediction.labels = open_labels_store(store_writer.commit())
    except BaseException:
        if store_writer is not None:
            store_writer.abort()
        raise
    entropy = None
    if uncertainty_layer and prediction.probabilities is not None:  # asked for above
        entropy = entropy_map(prediction.probabilities)
        if not probabilities:
            prediction.probabilities = None
    note = apply_anchor(prediction, anchor) if anchor is not None else ""
    # hashing here spares the main thread: merging needs the digests of what was written
    return SegmentOutcome(prediction, slice_digests(prediction.labels, prediction.slices), fresh,
                          entropy, note)
