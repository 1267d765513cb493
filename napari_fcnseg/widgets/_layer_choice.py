"""Which image and Labels layer the review works on, kept current as layers come and go.

:class:`LayerChoice` owns the review's two combo boxes. The Labels layer reviewed is the one the
user chose, as long as it exists; otherwise the chosen image's own labels layer (see
:func:`~._common.find_labels_layer`), else one with the image's shape — one the plugin wrote
before any other (a ground truth opened beside the scan). Choosing an image hands the choice of
labels back to this rule; choosing a labels layer shows the image it was made for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QObject, QSignalBlocker, Signal
from qtpy.QtWidgets import QComboBox

from napari_fcnseg.core.review import METADATA_KEY
from napari_fcnseg.layer_keys import PROBABILITY_KEY

from ._common import find_labels_layer, is_alive, layer_named

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels


class LayerChoice(QObject):
    """The image and Labels layer chosen for review in ``viewer``, by the module's rule.

    Call :meth:`refresh` once the signals are connected; after that the choice follows the
    viewer's layers (added, removed, reordered, renamed) and the user's picks by itself.

    Parameters
    ----------
    viewer : napari.Viewer
        The real viewer (not a proxy: layers are told apart by identity).
    parent : QObject
        The widget showing the combo boxes; the choice ends with it.
    """

    #: Emitted after every choice, with ``follow_image`` (a newly chosen labels layer may bring
    #: its image along) and ``defer_refresh`` (a layer came or went: list slices a bit later).
    chosen = Signal(bool, bool)

    def __init__(self, viewer: napari.Viewer, parent: QObject) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self._chosen_labels: Labels | None = None  # the labels layer the user chose
        self._reviewed: Labels | None = None  # the labels layer chosen last time
        self.image_combo, self.labels_combo = QComboBox(), QComboBox()
        self.image_combo.setToolTip("The scan the labels were drawn on.")
        self.labels_combo.setToolTip("The labels to review and learn from (the layer "
                                     "Segment wrote, or one you drew).")
        self.image_combo.currentTextChanged.connect(self._on_image_picked)
        self.labels_combo.currentTextChanged.connect(self._on_labels_picked)
        for event in ("inserted", "removed", "reordered"):
            getattr(viewer.layers.events, event).connect(self.refresh)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)

    @property
    def image_layer(self) -> Image | None:
        """The chosen image layer, or None; setting one reviews that image's own labels."""
        return layer_named(self.viewer, self.image_combo.currentText())

    @image_layer.setter
    def image_layer(self, layer: Image | str) -> None:
        with QSignalBlocker(self.image_combo):
            self.image_combo.setCurrentText(layer if isinstance(layer, str) else layer.name)
        self._on_image_picked()

    @property
    def labels_layer(self) -> Labels | None:
        """The Labels layer under review, or None; one set here stays until an image is set."""
        return layer_named(self.viewer, self.labels_combo.currentText())

    @labels_layer.setter
    def labels_layer(self, layer: Labels | str) -> None:
        with QSignalBlocker(self.labels_combo):
            self.labels_combo.setCurrentText(layer if isinstance(layer, str) else layer.name)
        self._on_labels_picked()

    def refresh(self, event: Any = None) -> None:
        """List the viewer's layers again and choose anew (a napari layer event, or None)."""
        from napari.layers import Image, Labels

        if not is_alive(self):
            return
        if event is not None and getattr(event, "type", "") == "inserted":
            event.value.events.name.connect(self.refresh)
        for combo, kind in ((self.image_combo, Image), (self.labels_combo, Labels)):
            current = combo.currentText()
            names = [lay.name for lay in self.viewer.layers if isinstance(lay, kind)
                     and not (kind is Image and lay.metadata.get(PROBABILITY_KEY))]
            with QSignalBlocker(combo):
                combo.clear()
                combo.addItems(names[::-1])  # top layer first
                if current in names:
                    combo.setCurrentText(current)
        # a layer added or removed in napari: list the slices a moment later, so that adding
        # a big labels layer does not also wait for every slice to be hashed
        self._choose_labels(defer_refresh=event is not None)

    def show_image_of(self, labels: Labels) -> None:
        """Choose the image ``labels`` were made for, when they are named "<image> labels"."""
        image = labels.name.removesuffix(" labels")
        if image != labels.name and self.image_combo.findText(image) >= 0:
            with QSignalBlocker(self.image_combo):
                self.image_combo.setCurrentText(image)

    def _on_image_picked(self, name: str = "") -> None:
        """An image was chosen: review its own labels layer (or one of its shape) from now on."""
        self._chosen_labels = None
        self._choose_labels(follow_image=False)

    def _on_labels_picked(self, name: str = "") -> None:
        """A labels layer was chosen: keep it, and show the image it was made for."""
        self._chosen_labels = self.labels_layer
        if self._chosen_labels is not None:
            self.show_image_of(self._chosen_labels)
        self._emit_chosen(True, False)

    def _labels_to_review(self) -> Labels | None:
        """The Labels layer to review now, by the rule in the module docstring.

        Without a fitting one, the layer reviewed so far stays, else the top Labels layer.
        """
        from napari.layers import Labels

        layers = [layer for layer in self.viewer.layers if isinstance(layer, Labels)][::-1]
        if not any(layer is self._chosen_labels for layer in layers):
            self._chosen_labels = None  # removed: choose automatically again
        # a layer the plugin wrote wins over one it did not (a ground truth opened beside the
        # scan), also when that one was reviewed so far
        ours = [layer for layer in layers if METADATA_KEY in layer.metadata]
        others = [layer for layer in layers if METADATA_KEY not in layer.metadata]
        previous = self._reviewed if any(layer is self._reviewed for layer in layers) else None
        candidates = [self._chosen_labels]
        image = self.image_layer
        if image is not None:
            shape = tuple(image.data.shape)

            def fitting(group: list) -> list:
                same = [layer for layer in group if tuple(layer.data.shape) == shape]
                return sorted(same, key=lambda layer: layer is not previous)  # no jumping

            candidates += [find_labels_layer(self.viewer, image), *fitting(ours),
                           *fitting(others)]
        candidates += [previous, *ours, *others]
        return next((layer for layer in candidates if layer is not None), None)

    def _choose_labels(self, follow_image: bool = True, defer_refresh: bool = False) -> None:
        """Choose the Labels layer to review anew, and say so."""
        labels = self._labels_to_review()
        with QSignalBlocker(self.labels_combo):
            self.labels_combo.setCurrentIndex(
                self.labels_combo.findText(labels.name) if labels is not None else -1)
        self._emit_chosen(follow_image, defer_refresh)

    def _emit_chosen(self, follow_image: bool, defer_refresh: bool) -> None:
        self._reviewed = self.labels_layer
        self.chosen.emit(follow_image, defer_refresh)
