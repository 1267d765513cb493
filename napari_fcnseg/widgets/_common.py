"""Plumbing shared by the plugin's widgets: notifications, layer checks and look-ups.

What widgets share with each other (the per-viewer session, its model store, store events) is
in :mod:`.session`; running work in the background behind a Future is :mod:`._job`'s, listing
the store's models in a combo box :mod:`._model_combo`'s.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels


def notify_error(message: str) -> None:
    """Show ``message`` to the user as a napari error notification."""
    from napari.utils.notifications import show_error

    show_error(message)


def notify_info(message: str) -> None:
    """Show ``message`` to the user as a napari information notification."""
    from napari.utils.notifications import show_info

    show_info(message)


def notify_warning(message: str) -> None:
    """Show ``message`` to the user as a napari warning notification."""
    from napari.utils.notifications import show_warning

    show_warning(message)


def fail_future(future: Future, message: str, error: type[Exception],
                status_label: Any = None) -> Future:
    """Show ``message`` as an error (and in ``status_label``), and fail ``future`` with it.

    Returns
    -------
    concurrent.futures.Future
        ``future``, now holding ``error(message)`` unless it was already done.
    """
    notify_error(message)
    if status_label is not None:
        status_label.setText(message)
    if not future.done():
        future.set_exception(error(message))
    return future


def is_alive(widget: Any) -> bool:
    """Return False once the Qt object behind ``widget`` has been deleted."""
    try:
        widget.objectName()
    except RuntimeError:
        return False
    return True


def image_layers(viewer: napari.Viewer) -> list[Image]:
    """Return the viewer's Image layers, bottom to top."""
    from napari.layers import Image

    return [layer for layer in viewer.layers if isinstance(layer, Image)]


def image_array(layer: Image) -> Any:
    """The pixels of an image layer to segment or learn from.

    A multiscale image gives its full-resolution level (the labels are drawn at that
    resolution); data read on demand (dask, zarr) stay lazy, the rest is a numpy array.
    """
    from napari_fcnseg.core.arrays import as_image

    return as_image(layer.data[0] if getattr(layer, "multiscale", False) else layer.data)


def validate_image_layer(layer: Any) -> str | None:
    """Return why ``layer`` cannot be segmented, in plain words, or None when it can.

    Parameters
    ----------
    layer : napari layer or None
        The layer chosen for segmentation.
    """
    from napari.layers import Image

    if layer is None:
        return "Choose an image layer to segment first."
    if not isinstance(layer, Image):
        return (f"'{layer.name}' is a {type(layer).__name__} layer; "
                "choose an image layer (a CT or MR scan) to segment.")
    if getattr(layer, "rgb", False):
        return (f"'{layer.name}' is a colour (RGB/RGBA) image; the network segments "
                "grayscale CT/MR images only.")
    data = image_array(layer)
    shape = tuple(getattr(data, "shape", ()))
    if len(shape) < 2 or int(np.prod(shape)) == 0:
        return f"'{layer.name}' holds no image data (shape {shape})."
    dtype = np.dtype(getattr(data, "dtype", np.float64))
    if dtype == np.bool_:
        return (f"'{layer.name}' is a yes/no (boolean) mask, not an image; "
                "choose the CT or MR scan instead.")
    if dtype.kind not in "iuf":
        return f"'{layer.name}' holds {dtype} values, not numbers; it cannot be segmented."
    return None


def layer_named(viewer: napari.Viewer, name: str) -> Any:
    """The viewer's layer called ``name``, or None (e.g. for an empty combo-box choice)."""
    return viewer.layers[name] if name in viewer.layers else None


def find_labels_layer(viewer: napari.Viewer, image: Image) -> Labels | None:
    """The Labels layer holding ``image``'s segmentation, or None when there is none yet.

    That is the layer named ``"<image> labels"`` (or napari's ``"<image> labels [n]"`` when the
    name was taken) whose shape equals the image's; the exact name wins.
    """
    from napari.layers import Labels

    base = f"{image.name} labels"
    candidates = [layer for layer in viewer.layers if isinstance(layer, Labels)
                  and (layer.name == base or layer.name.startswith(base + " ["))]
    candidates.sort(key=lambda layer: layer.name != base)
    for layer in candidates:
        if tuple(layer.data.shape) == tuple(image.data.shape):
            return layer
    return None


def current_slice(viewer: napari.Viewer, layer: Any) -> int:
    """Index of the slice of ``layer`` shown now, counted as in :mod:`napari_fcnseg.core.predict`.

    The slice runs along the layer's axis -3 (and its leading axes for 4D data); 2D data has
    only slice 0.
    """
    shape = tuple(layer.data.shape)
    if len(shape) == 2:
        return 0
    position = layer.world_to_data(viewer.dims.point)
    lead = [int(np.clip(round(float(p)), 0, n - 1))
            for p, n in zip(position[-len(shape):-2], shape[:-2], strict=True)]
    return int(np.ravel_multi_index(lead, shape[:-2]))


def layer_geometry(layer: Any) -> dict[str, Any]:
    """Keyword arguments that place a new layer exactly over ``layer``."""
    return {"scale": layer.scale, "translate": layer.translate, "units": layer.units,
            "axis_labels": layer.axis_labels}
