"""Which pixels a person painted on a Labels layer, slice by slice (for partial labels).

A radiologist often fixes part of a slice, or scribbles a few strokes per class, instead of
correcting a whole slice. Learning from the whole slice would then teach the network every
uncorrected mistake around the strokes. :class:`StrokeTracker` listens to napari's ``paint``
event of one Labels layer (brush, eraser, fill, polygon and ``data_setitem`` all emit it) and
keeps, per slice, a mask of the pixels the person set. Erasing is a stroke too: it says
"background here". The masks live as long as the widget; they are not saved with the labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class StrokeTracker:
    """Per-slice masks of painted pixels of one Labels layer.

    Parameters
    ----------
    shape : tuple of int
        Shape of the layer's data; slices are indexed as in ``data.reshape(-1, Y, X)``.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(int(s) for s in shape)
        self._masks: dict[int, np.ndarray] = {}

    def _mask(self, k: int) -> np.ndarray:
        if k not in self._masks:
            self._masks[k] = np.zeros(self.shape[-2:], bool)
        return self._masks[k]

    def add_indices(self, indices: tuple[np.ndarray, ...]) -> None:
        """Record painted pixels given as a numpy multi-index into the layer's data."""
        idx = [np.asarray(i).ravel() for i in np.broadcast_arrays(*indices)]
        if len(idx) != len(self.shape) or not idx[0].size:
            return
        lead = np.ravel_multi_index(idx[:-2], self.shape[:-2]) if len(idx) > 2 else np.zeros(
            idx[0].size, np.int64)
        for k in np.unique(lead):
            sel = lead == k
            self._mask(int(k))[idx[-2][sel], idx[-1][sel]] = True

    def add_box(self, box: tuple[slice, ...], mask: np.ndarray | None) -> None:
        """Record the pixels ``mask`` selects inside the bounding box ``box`` (None: all)."""
        ranges = [range(*s.indices(n)) for s, n in zip(box, self.shape, strict=True)]
        if mask is None:
            mask = np.ones([len(r) for r in ranges], bool)
        for pos in np.ndindex(*[len(r) for r in ranges[:-2]]):
            plane = mask[pos]
            if not plane.any():
                continue
            lead = tuple(ranges[i][p] for i, p in enumerate(pos))
            k = int(np.ravel_multi_index(lead, self.shape[:-2])) if lead else 0
            self._mask(k)[box[-2], box[-1]] |= plane

    def on_paint(self, event: Any) -> None:
        """Record every atom of an edit (callback of napari's ``Labels.events.paint``).

        An atom that does not fit the layer's shape (its data were replaced) is not recorded.
        """
        for atom in getattr(event, "value", None) or ():
            try:
                self._add_atom(atom)
            except (ValueError, IndexError, TypeError):
                continue

    def _add_atom(self, atom: Any) -> None:
        if hasattr(atom, "slice_key"):  # a mask-based edit (brush, fill, polygon)
            self.add_box(tuple(atom.slice_key), atom.mask)
        elif isinstance(atom, tuple) and len(atom) == 3:  # (indices, old, new)
            indices = atom[0]
            if isinstance(indices, tuple) and all(
                    isinstance(i, np.ndarray | list | int | np.integer) for i in indices):
                self.add_indices(tuple(np.asarray(i) for i in indices))

    def painted(self, k: int) -> np.ndarray | None:
        """The (Y, X) mask of pixels painted on slice ``k``, or None if none were."""
        mask = self._masks.get(k)
        return mask if mask is not None and mask.any() else None

    def painted_slices(self) -> list[int]:
        """Slices with at least one painted pixel, ascending."""
        return sorted(k for k, m in self._masks.items() if m.any())


#: Label value given to pixels nobody painted, on slices learned from strokes only.
IGNORE_LABEL = np.iinfo(np.int32).max


def strokes_only(data: np.ndarray, slices: list[int], tracker: StrokeTracker,
                 whole: set[int]) -> tuple[np.ndarray, int | None]:
    """Mark the unpainted pixels of ``slices`` as not annotated, except on ``whole`` slices.

    Parameters
    ----------
    data : numpy.ndarray
        Copy of the labels (the training slices filled in).
    slices : list of int
        Slices to learn from.
    tracker : StrokeTracker
        What was painted.
    whole : set of int
        Slices the person reviewed: every pixel of those counts.

    Returns
    -------
    labels : numpy.ndarray
        int32 labels with :data:`IGNORE_LABEL` where nobody painted (``data`` itself when no
        slice was learned from strokes only).
    ignore_label : int or None
        :data:`IGNORE_LABEL`, or None when every slice counts whole.
    """
    painted = {k: tracker.painted(k) for k in slices if k not in whole}
    partial = {k: mask for k, mask in painted.items() if mask is not None}
    if not partial:
        return data, None
    out = data.astype(np.int32)
    planes = out.reshape(-1, *out.shape[-2:])
    for k, mask in partial.items():
        planes[k][~mask] = IGNORE_LABEL
    return out, IGNORE_LABEL
