"""The Segment widget's "Undo overwrite": put back the person's slices the latest run replaced.

A run asked to overwrite edited or reviewed slices records what they held
(:class:`~napari_fcnseg.core.review.OverwriteUndo`); :class:`LastOverwrite` keeps the latest
such record and puts it back on request, leaving alone any slice painted on since
(:func:`napari_fcnseg.core.review.undo_overwrite`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_fcnseg.core.review import METADATA_KEY, OverwriteUndo, ReviewState, undo_overwrite

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels

    from ._segment_output import Merged


class UndoError(Exception):
    """The slices could not be put back; the message says why in plain words."""


class LastOverwrite:
    """What "Undo overwrite" puts back: always the latest run's, of one labels layer."""

    def __init__(self) -> None:
        self._entry: tuple[Labels, OverwriteUndo] | None = None

    @property
    def available(self) -> bool:
        """True when there are slices to put back."""
        return self._entry is not None

    def record(self, merged: Merged) -> None:
        """Take in what a run wrote: a run that replaced nothing of the person's ends the undo."""
        if merged.undo is not None and merged.undo.before:
            self._entry = (merged.layer, merged.undo)
        elif merged.written:
            self._entry = None

    def forget_if_removed(self, viewer: napari.Viewer) -> bool:
        """Forget the slices once their layer left ``viewer`` (so they are not kept alive).

        Returns
        -------
        bool
            True if they were forgotten now.
        """
        if self._entry is not None and self._entry[0] not in viewer.layers:
            self._entry = None
            return True
        return False

    def put_back(self, viewer: napari.Viewer) -> tuple[list[int], str]:
        """Put the slices back into their layer in ``viewer``; they are forgotten either way.

        Returns
        -------
        restored : list of int
            The slices put back.
        message : str
            What was done, for the status line.

        Raises
        ------
        UndoError
            If there is nothing to put back, the layer was removed, or its data no longer fit.
        """
        if self._entry is None:
            raise UndoError("No run has overwritten edited or reviewed slices; nothing to undo.")
        layer, undo = self._entry
        self._entry = None
        if layer not in viewer.layers:
            raise UndoError(f"The labels layer '{layer.name}' was removed; nothing to put back.")
        state = ReviewState.from_metadata(layer.metadata) or ReviewState()
        try:
            restored, changed = undo_overwrite(layer.data, state, undo)
        except (ValueError, TypeError, IndexError) as exc:  # e.g. its data was replaced
            raise UndoError(f"Could not put the slices back into '{layer.name}': {exc}") from exc
        layer.metadata[METADATA_KEY] = state.to_metadata()
        layer.refresh()
        message = f"Put back {len(restored)} slice(s) in '{layer.name}'"
        if changed:
            message += (f"; left {len(changed)} slice(s) you changed since as they are "
                        f"({', '.join(map(str, changed))})")
        return restored, message + "."
