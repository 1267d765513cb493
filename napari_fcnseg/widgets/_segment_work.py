"""The Segment widget's worker-thread half: load the model, predict, and hash what it wrote.

Everything here runs off the main thread, so that the viewer stays responsive; the widget
(:mod:`.segment`) merges the outcome into the labels on the main thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from napari_fcnseg.core.store import ModelStore

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
    """

    prediction: Any
    digests: dict[int, str]
    loaded: Any
    entropy: Any = None


def predict_work(store: ModelStore, model: str, loaded: Any, data: Any,
                 slices: list[int] | None, modality: str, probabilities: bool, device: str,
                 batch_size: int | None, uncertainty_layer: bool = False):
    """Generator run in the worker thread: load the model if needed, normalise, predict, hash.

    ``model`` is loaded from ``store`` unless ``loaded`` (the widget's copy of it) is given.
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
    image = np.asarray(data)
    normalizer = fit_normalizer(image, modality)
    prediction = yield from predict_iter(
        loaded.net, image, slices=slices, normalizer=normalizer, batch_size=batch_size,
        probabilities="uint8" if probabilities or uncertainty_layer else None,
        uncertainty=True, device=device)
    entropy = None
    if uncertainty_layer:
        entropy = entropy_map(prediction.probabilities)
        if not probabilities:
            prediction.probabilities = None
    # hashing here spares the main thread: merging needs the digests of what was written
    return SegmentOutcome(prediction, slice_digests(prediction.labels, prediction.slices), fresh,
                          entropy)
