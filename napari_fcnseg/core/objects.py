"""Keep only the objects a person pointed at: predicted components that touch their slices.

A tumour corrected on two slices is one object; a network fine-tuned on those slices also marks
tumour-like spots (vessels, enhancing tissue) all over the volume, and on the slices nobody
reviewed those false positives outweigh the tumour itself. When the task is "this object"
rather than "every object of this kind", the predicted voxels of a class that are not connected
in 3D to a voxel of the same class on a reviewed slice can be dropped: the reviewed slices
anchor the object, the network grows it into the neighbouring slices.

This is a choice per class: for a structure with several separate objects of which only some
were reviewed (vertebrae, metastases) it would drop the others. A class with no voxel on any
reviewed slice has nothing to anchor it and is left as predicted.

Slices are counted as in :mod:`napari_fcnseg.core.predict` (index ``k`` of
``labels.reshape(-1, Y, X)``); a 4D (T, Z, Y, X) volume is treated one time point at a time.
Pure numpy + scipy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

#: 3D neighbourhood of a voxel: the 26 around it. Thick slices shift an object by a pixel or
#: two from one slice to the next, so diagonal contact counts as touching.
CONNECTIVITY = 3


@dataclass
class AnchorReport:
    """What :func:`keep_anchored_objects` removed.

    Attributes
    ----------
    removed : dict of int to int
        Class -> voxels set to background.
    objects_removed : dict of int to int
        Class -> connected objects removed.
    unanchored : list of int
        Requested classes left as predicted: none of their voxels lies on a reviewed slice.
    changed_slices : list of int
        Slices whose content changed, ascending.
    """

    removed: dict[int, int] = field(default_factory=dict)
    objects_removed: dict[int, int] = field(default_factory=dict)
    unanchored: list[int] = field(default_factory=list)
    changed_slices: list[int] = field(default_factory=list)

    def describe(self, class_names: list[str] | None = None) -> str:
        """One plain sentence on what was removed (and what could not be anchored)."""

        def name(c: int) -> str:
            return class_names[c] if class_names and c < len(class_names) else f"class {c}"

        parts = [f"{self.objects_removed[c]} {name(c)} object(s) ({n} voxels)"
                 for c, n in sorted(self.removed.items()) if n]
        text = ("removed " + ", ".join(parts) + " not touching the reviewed slices" if parts
                else "every predicted object touches the reviewed slices; nothing removed")
        if self.unanchored:
            text += ("; left as predicted, with no voxel on a reviewed slice: "
                     + ", ".join(name(c) for c in self.unanchored))
        return text


def keep_anchored_objects(labels: np.ndarray, anchor_slices: Iterable[int],
                          classes: Iterable[int],
                          editable_slices: Iterable[int] | None = None) -> AnchorReport:
    """Set to background, in place, the objects of ``classes`` that touch no reviewed slice.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer labels, (Z, Y, X) or (T, Z, Y, X): the person's labels on the reviewed slices,
        predictions elsewhere. Modified in place, only outside ``anchor_slices``.
    anchor_slices : iterable of int
        Reviewed slices (indices of ``labels.reshape(-1, Y, X)``); never changed.
    classes : iterable of int
        Label values to filter (0, background, is ignored).
    editable_slices : iterable of int, optional
        The only slices that may change (anchors never do); default every other slice. The
        rest is read, to connect objects through it, but left as it is.

    Returns
    -------
    AnchorReport
        Voxels and objects removed per class, the classes without an anchor, the changed slices.

    Raises
    ------
    ValueError
        For a 2D image (no neighbouring slices to connect through) or labels that are not
        integers.
    """
    from scipy import ndimage

    if labels.ndim < 3:
        raise ValueError("keeping objects that touch reviewed slices needs a 3D volume")
    if labels.dtype.kind not in "iub":
        raise ValueError(f"labels must be integers, not {labels.dtype}")
    z, h, w = labels.shape[-3:]
    stacks = labels.reshape(-1, z, h, w)
    anchors = sorted({int(k) for k in anchor_slices if 0 <= int(k) < stacks.shape[0] * z})
    anchor_mask = np.zeros(stacks.shape[0] * z, bool)
    anchor_mask[anchors] = True
    anchor_mask = anchor_mask.reshape(-1, z)
    frozen = anchor_mask.copy()
    if editable_slices is not None:
        frozen[:] = True
        frozen.reshape(-1)[[int(k) for k in editable_slices]] = False
        frozen |= anchor_mask
    structure = ndimage.generate_binary_structure(3, CONNECTIVITY)
    report = AnchorReport()
    changed: set[int] = set()
    for c in sorted({int(c) for c in classes} - {0}):
        removed = objects = 0
        present = anchored = False
        for t, stack in enumerate(stacks):
            reviewed = anchor_mask[t]
            mask = stack == c
            if not mask.any():
                continue
            present = True
            if not mask[reviewed].any():
                continue  # nothing anchors this class in this volume: it stays as predicted
            anchored = True
            components, count = ndimage.label(mask, structure)
            keep = np.zeros(count + 1, bool)
            keep[np.unique(components[reviewed])] = True
            keep[0] = True
            doomed = ~keep[components]
            doomed[frozen[t]] = False  # the person's slices stay exactly as they are
            n = int(doomed.sum())
            if n:
                objects += int(np.unique(components[doomed]).size)
                removed += n
                stack[doomed] = 0
                changed.update(t * z + int(k) for k in np.flatnonzero(doomed.any((1, 2))))
        if present and not anchored:
            report.unanchored.append(c)
        elif present:
            report.removed[c], report.objects_removed[c] = removed, objects
    if not np.shares_memory(stacks, labels):  # a non-contiguous input was copied by reshape
        labels[...] = stacks.reshape(labels.shape)
    report.changed_slices = sorted(changed)
    return report


def anchor_prediction(labels: np.ndarray, prediction: np.ndarray, predicted: Iterable[int],
                      reviewed: Iterable[int], classes: Iterable[int]
                      ) -> tuple[np.ndarray, AnchorReport]:
    """A prediction to merge into ``labels``, keeping only objects that touch reviewed slices.

    The objects are traced through the volume as it will be after the merge: the person's
    labels on ``reviewed`` slices, the new prediction on the other ``predicted`` slices, and
    the labels already there elsewhere (an earlier prediction), which are only read.

    Parameters
    ----------
    labels : numpy.ndarray
        The labels as they are now (not modified).
    prediction : numpy.ndarray
        The new prediction, same shape; only its ``predicted`` slices are read.
    predicted : iterable of int
        Slices the prediction holds.
    reviewed : iterable of int
        Slices a person edited or reviewed: the anchors, which the merge will keep.
    classes : iterable of int
        Label values to filter.

    Returns
    -------
    filtered : numpy.ndarray
        A copy of the volume after the merge with unanchored objects removed; merge its
        ``predicted`` slices.
    report : AnchorReport
        What was removed; ``changed_slices`` lists only slices of ``predicted``.

    Raises
    ------
    ValueError
        If the shapes differ, or as :func:`keep_anchored_objects`.
    """
    if tuple(prediction.shape) != tuple(labels.shape):
        raise ValueError(f"prediction shape {tuple(prediction.shape)} does not match labels "
                         f"shape {tuple(labels.shape)}")
    keep = {int(k) for k in reviewed}
    h, w = labels.shape[-2:]
    combined = np.array(labels, copy=True)
    flat, new = combined.reshape(-1, h, w), np.asarray(prediction).reshape(-1, h, w)
    written = sorted({int(k) for k in predicted} - keep)
    flat[written] = new[written]
    report = keep_anchored_objects(combined, keep, classes, editable_slices=written)
    return combined, report
