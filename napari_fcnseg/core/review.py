"""Review state of a Labels layer: which slices the model wrote, and which a person owns.

A slice is *edited* when its content no longer matches what the model wrote there (or, for a
slice the model never wrote, when it holds any label at all), and *reviewed* when a person
marked it as checked. Edited and reviewed slices together are *protected*: a new prediction
never overwrites them unless asked to, and they are the ones fine-tuning learns from.

Slices are counted as in :mod:`napari_fcnseg.core.predict`: index ``k`` of
``labels.reshape(-1, Y, X)``, i.e. ``z`` for a 3D volume, ``t * Z + z`` for a 4D one and ``0``
for a 2D image. The state is stored JSON-friendly under ``layer.metadata[METADATA_KEY]``.

This module is pure numpy: no Qt, napari or torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .slices import slice_count, slice_index

METADATA_KEY = "napari-fcnseg"
#: Version 2: slice digests are truncated SHA-256 (about twice as fast as BLAKE2b here).
STATE_VERSION = 2
_DIGEST_HEX = 32


@dataclass
class ReviewState:
    """What the model wrote into a Labels layer, and what a person has reviewed.

    Attributes
    ----------
    model : str
        Name of the model that last wrote into the layer ("" when none has).
    predicted : dict of int to str
        Slice index -> digest of the slice exactly as the model wrote it.
    reviewed : set of int
        Slices a person marked as reviewed (accepted or corrected).
    classes : list of str
        Class names, background first; label value ``i`` means ``classes[i]``.
    uncertainty : dict of int to float
        Slice -> how unsure the model was when it wrote the slice (0 certain .. 1), to rank
        the slices worth reviewing first.
    """

    model: str = ""
    predicted: dict[int, str] = field(default_factory=dict)
    reviewed: set[int] = field(default_factory=set)
    classes: list[str] = field(default_factory=list)
    uncertainty: dict[int, float] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, Any]:
        """Return the state as a JSON-serialisable dict (slice keys become strings)."""
        return {
            "version": STATE_VERSION,
            "model": self.model,
            "predicted": {str(k): v for k, v in sorted(self.predicted.items())},
            "reviewed": sorted(int(k) for k in self.reviewed),
            "classes": list(self.classes),
            "uncertainty": {str(k): float(v) for k, v in sorted(self.uncertainty.items())},
        }

    @classmethod
    def from_metadata(cls, md: dict[str, Any] | None) -> ReviewState | None:
        """Rebuild a state from :meth:`to_metadata` output.

        Parameters
        ----------
        md : dict or None
            Either the dict written by :meth:`to_metadata`, or a layer's whole ``metadata``
            holding it under :data:`METADATA_KEY`.

        Returns
        -------
        ReviewState or None
            None when ``md`` holds no state or the state is malformed.
        """
        if not isinstance(md, dict):
            return None
        if METADATA_KEY in md:
            md = md[METADATA_KEY]
            if not isinstance(md, dict):
                return None
        if "predicted" not in md and "reviewed" not in md:
            return None
        try:
            predicted = {int(k): str(v) for k, v in dict(md.get("predicted") or {}).items()}
            if md.get("version") != STATE_VERSION:
                # digests made another way cannot be compared: forget what the model wrote, so
                # every non-empty slice counts as the person's (protected, never overwritten)
                predicted = {}
            reviewed = {int(k) for k in md.get("reviewed") or ()}
            classes = [str(c) for c in md.get("classes") or ()]
            model = str(md.get("model") or "")
            uncertainty = {int(k): float(v) for k, v in dict(md.get("uncertainty") or {}).items()}
        except (TypeError, ValueError):
            return None
        return cls(model=model, predicted=predicted, reviewed=reviewed, classes=classes,
                   uncertainty=uncertainty)

    def record_prediction(self, digests: Mapping[int, str], model_name: str) -> None:
        """Note that ``model_name`` just wrote the slices in ``digests`` (slice -> digest).

        Those slices are no longer reviewed: what the person vouched for was overwritten.
        """
        self.predicted.update({int(k): str(v) for k, v in digests.items()})
        self.reviewed -= {int(k) for k in digests}
        self.model = model_name

    def next_to_review(self, n_slices: int, protected: Iterable[int],
                       after: int | None = None) -> int | None:
        """The slice most worth reviewing next: the most uncertain one nobody owns yet.

        Parameters
        ----------
        n_slices : int
            Slices in the layer.
        protected : iterable of int
            Slices a person edited or reviewed (never proposed).
        after : int, optional
            Without uncertainty scores, propose the first free slice after this one.

        Returns
        -------
        int or None
            The slice, or None when every slice is edited or reviewed.
        """
        owned = set(protected)
        free = [k for k in range(n_slices) if k not in owned]
        if not free:
            return None
        scored = [k for k in free if k in self.uncertainty]
        if scored:
            return max(scored, key=lambda k: (self.uncertainty[k], -k))
        later = [k for k in free if after is None or k > after]
        return (later or free)[0]

    def mark_reviewed(self, slices: Iterable[int], reviewed: bool = True) -> None:
        """Add ``slices`` to (or, with ``reviewed=False``, remove them from) :attr:`reviewed`."""
        chosen = {int(k) for k in slices}
        if reviewed:
            self.reviewed |= chosen
        else:
            self.reviewed -= chosen


def _digest(plane: np.ndarray) -> str:
    """Digest of one slice's label values, independent of the integer dtype holding them."""
    plane = np.asarray(plane)
    if plane.dtype == np.bool_:
        plane = plane.view(np.uint8)
    elif plane.dtype.kind in "iu" and plane.dtype != np.uint8:
        if not plane.size or (plane.min() >= 0 and plane.max() <= 255):
            plane = plane.astype(np.uint8)
        else:
            plane = plane.astype("<i8")
    elif plane.dtype.kind == "f":
        plane = plane.astype("<f8")
    data = np.ascontiguousarray(plane).reshape(-1)
    h = hashlib.sha256(f"{plane.shape}{data.dtype.str}".encode())
    h.update(data.data.cast("B"))  # no copy; hashlib lets other threads run meanwhile
    return h.hexdigest()[:_DIGEST_HEX]


def _chosen(shape: tuple[int, ...], slices: Iterable[int] | None) -> list[int]:
    n = slice_count(shape)
    if slices is None:
        return list(range(n))
    chosen = sorted({int(k) for k in slices})
    bad = [k for k in chosen if not 0 <= k < n]
    if bad:
        raise IndexError(f"slices {bad} are outside 0..{n - 1}")
    return chosen


def slice_digests(labels: np.ndarray, slices: Iterable[int] | None = None) -> dict[int, str]:
    """Return slice index -> digest of its current content.

    Parameters
    ----------
    labels : numpy.ndarray
        (Y, X), (Z, Y, X) or (..., Z, Y, X) integer labels.
    slices : iterable of int, optional
        Only these slices; default all.
    """
    shape = tuple(labels.shape)
    return {k: _digest(labels[slice_index(shape, k)]) for k in _chosen(shape, slices)}


def edited_slices(
    labels: np.ndarray, state: ReviewState, slices: Iterable[int] | None = None
) -> list[int]:
    """Return the slices whose content differs from what the model wrote there.

    A slice the model never wrote counts as edited as soon as it holds any non-zero label.

    Parameters
    ----------
    labels : numpy.ndarray
        The labels as they are now.
    state : ReviewState
        The layer's review state.
    slices : iterable of int, optional
        Only look at these slices; default all.
    """
    shape = tuple(labels.shape)
    edited = []
    for k in _chosen(shape, slices):
        plane = np.asarray(labels[slice_index(shape, k)])
        written = state.predicted.get(k)
        if written is None:
            if plane.any():
                edited.append(k)
        elif _digest(plane) != written:
            edited.append(k)
    return edited


def protected_slices(
    labels: np.ndarray, state: ReviewState, slices: Iterable[int] | None = None
) -> list[int]:
    """Return the slices a prediction must not overwrite: edited ones and reviewed ones.

    Parameters
    ----------
    labels : numpy.ndarray
        The labels as they are now.
    state : ReviewState
        The layer's review state.
    slices : iterable of int, optional
        Only look at these slices; default all.
    """
    shape = tuple(labels.shape)
    chosen = _chosen(shape, slices)
    reviewed = state.reviewed & set(chosen)
    return sorted(set(edited_slices(labels, state, chosen)) | reviewed)


def merge_prediction(
    labels: np.ndarray,
    prediction: np.ndarray,
    slices: Iterable[int],
    state: ReviewState,
    model_name: str,
    overwrite_protected: bool = False,
    digests: Mapping[int, str] | None = None,
    undo: OverwriteUndo | None = None,
) -> list[int]:
    """Write ``prediction`` into ``labels`` in place on ``slices``, sparing protected ones.

    Parameters
    ----------
    labels : numpy.ndarray
        The layer's labels, modified in place.
    prediction : numpy.ndarray
        Model output with the same shape as ``labels``.
    slices : iterable of int
        Slices that were predicted.
    state : ReviewState
        Updated in place: digests of written slices and the model name. A reviewed slice that
        is overwritten (only with ``overwrite_protected``) is no longer reviewed.
    model_name : str
        Name of the model that made ``prediction``.
    overwrite_protected : bool
        Also overwrite edited and reviewed slices.
    digests : mapping of int to str, optional
        ``slice_digests(prediction, slices)``, when already computed (e.g. in a worker thread);
        saves hashing the written slices again.
    undo : OverwriteUndo, optional
        Filled with what ``overwrite_protected`` overwrote of the person's slices, so that
        :func:`undo_overwrite` can put it back.

    Returns
    -------
    list of int
        The slices written, ascending.

    Raises
    ------
    ValueError
        If the shapes differ or the prediction holds labels that ``labels`` cannot store.
    """
    shape = tuple(labels.shape)
    if tuple(prediction.shape) != shape:
        raise ValueError(
            f"prediction shape {tuple(prediction.shape)} does not match labels shape {shape}")
    chosen = _chosen(shape, slices)
    protected = set(protected_slices(labels, state, chosen)) if (
        undo is not None or not overwrite_protected) else set()
    todo = [k for k in chosen if overwrite_protected or k not in protected]
    dtype = np.dtype(labels.dtype)
    if todo and dtype.kind in "iu":
        top = max(int(np.asarray(prediction[slice_index(shape, k)]).max()) for k in todo)
        if top > np.iinfo(dtype).max:
            raise ValueError(f"labels of dtype {dtype} cannot hold label {top}")
    if undo is not None:
        undo.state = state.to_metadata()
    written = {}
    for k in todo:
        idx = slice_index(shape, k)
        if undo is not None and k in protected:
            undo.before[k] = np.array(labels[idx])
        labels[idx] = np.asarray(prediction[idx]).astype(dtype, copy=False)
        # digests do not depend on the integer dtype, so the prediction's own one will do
        written[k] = digests[k] if digests and k in digests else _digest(labels[idx])
    state.record_prediction(written, model_name)
    if undo is not None:
        undo.written = {k: written[k] for k in undo.before}
    return todo


@dataclass
class OverwriteUndo:
    """What a merge overwrote of a person's edited or reviewed slices, to put it back.

    Attributes
    ----------
    before : dict of int to numpy.ndarray
        Slice -> its content before the merge.
    written : dict of int to str
        Slice -> digest of what the merge wrote there.
    state : dict
        The review state before the merge, as :meth:`ReviewState.to_metadata` gives it.
    """

    before: dict[int, np.ndarray] = field(default_factory=dict)
    written: dict[int, str] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


def undo_overwrite(labels: np.ndarray, state: ReviewState, undo: OverwriteUndo
                   ) -> tuple[list[int], list[int]]:
    """Put back the person's slices that a merge overwrote, unless they were changed since.

    Parameters
    ----------
    labels : numpy.ndarray
        The labels the merge wrote into; modified in place.
    state : ReviewState
        Their review state now; the restored slices get back their earlier entries (edited
        slices count as edited again, reviewed ones as reviewed).
    undo : OverwriteUndo
        Filled by :func:`merge_prediction`.

    Returns
    -------
    restored, changed : list of int
        Slices put back, and slices left alone because their content changed after the merge.
    """
    shape = tuple(labels.shape)
    before = ReviewState.from_metadata(undo.state) or ReviewState()
    restored, changed = [], []
    for k in sorted(undo.before):
        idx = slice_index(shape, k)
        if _digest(labels[idx]) != undo.written.get(k):
            changed.append(k)
            continue
        labels[idx] = undo.before[k]
        restored.append(k)
        if k in before.predicted:
            state.predicted[k] = before.predicted[k]
        else:
            state.predicted.pop(k, None)
        state.mark_reviewed([k], reviewed=k in before.reviewed)
    return restored, changed
