"""Zarr and OME-Zarr: images larger than memory, read and written a slice at a time.

Reading gives a :class:`~napari_fcnseg.io.base.Volume` whose ``data`` is the zarr array itself
(nothing is loaded until a slice is asked for). A plain zarr array or an OME-Zarr image (a
group whose ``multiscales`` metadata names its datasets: the first, full-resolution one is
used, with its voxel size) can be read.

Labels are written as an OME-Zarr (v0.4, zarr format 2) image: a group with one uint8 dataset
``"0"`` chunked one slice per chunk, ``multiscales`` metadata with the voxel size in mm, and the
class names in the group's ``napari-fcnseg`` attribute. :class:`ZarrLabelsWriter` builds the
store in a hidden folder beside the destination and moves it into place only on
:meth:`~ZarrLabelsWriter.commit`, so an interrupted run leaves no half-written store. zarr is
imported only here, on first use (``pip install 'napari-fcnseg[zarr]'``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from napari_fcnseg.core.arrays import write_slices
from napari_fcnseg.io.base import ImageReadError, ImageWriteError, Volume

ATTRIBUTE = "napari-fcnseg"
_AXES = ("z", "y", "x")


def _zarr(path: Path, error: type[Exception]) -> Any:
    try:
        import zarr
    except ImportError:
        raise error("zarr is needed for .zarr images: pip install 'napari-fcnseg[zarr]'",
                    path) from None
    return zarr


def is_zarr(path: Path) -> bool:
    """Whether ``path`` is a zarr store (a folder named ``*.zarr`` or holding zarr metadata)."""
    if not path.is_dir():
        return False
    return path.suffix.lower() == ".zarr" or any(
        (path / name).is_file() for name in (".zarray", ".zgroup", "zarr.json"))


def _scale(attrs: dict, ndim: int) -> tuple[float, ...] | None:
    try:
        first = attrs["multiscales"][0]
        transforms = first["datasets"][0].get("coordinateTransformations", [])
        scale = next(t["scale"] for t in transforms if t.get("type") == "scale")
        return tuple(float(s) for s in scale[-ndim:])
    except (KeyError, IndexError, TypeError, StopIteration, ValueError):
        return None


def read_zarr(path: Path) -> Volume:
    """Open a zarr array or OME-Zarr image lazily.

    Raises
    ------
    ImageReadError
        When zarr is missing, the store cannot be opened or holds no array.
    """
    zarr = _zarr(path, ImageReadError)
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:
        raise ImageReadError(f"not a readable zarr store ({type(exc).__name__}: {exc})",
                             path) from exc
    attrs = dict(node.attrs)
    if hasattr(node, "shape"):
        array = node
    else:
        try:
            dataset = attrs["multiscales"][0]["datasets"][0]["path"]
        except (KeyError, IndexError, TypeError):
            names = sorted(name for name, _ in node.arrays())
            if not names:
                raise ImageReadError("the zarr store holds no array", path) from None
            dataset = names[0]
        array = node[dataset]
    if array.dtype.kind not in "biuf":
        raise ImageReadError(f"cannot segment an image of dtype {array.dtype}", path)
    ndim = array.ndim
    spacing = _scale(attrs, min(ndim, 3)) or (1.0,) * min(ndim, 3)
    ours: dict = attrs[ATTRIBUTE] if isinstance(attrs.get(ATTRIBUTE), dict) else {}
    return Volume(data=array, spacing=spacing, path=path, format="zarr",
                  modality=ours.get("modality"), header={"class_names": ours.get("classes")})


class ZarrLabelsWriter:
    """A uint8 OME-Zarr labels store, filled slice by slice, moved into place on commit.

    Parameters
    ----------
    path : Path
        Destination folder (``*.zarr``); replaced only by :meth:`commit`.
    shape : tuple of int
        Shape of the labels (that of the image).
    spacing : tuple of float, optional
        Voxel size in mm of the last (up to) three axes.
    class_names : list of str, optional
        Saved in the store's ``napari-fcnseg`` attribute.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], spacing=None,
                 class_names: list[str] | None = None) -> None:
        zarr = _zarr(path, ImageWriteError)
        if not path.parent.is_dir():
            raise ImageWriteError(f"the folder '{path.parent}' does not exist", path)
        if path.exists() and not is_zarr(path):
            raise ImageWriteError("it exists and is not a zarr store; refusing to replace it",
                                  path)
        self.path = path
        self.tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
        ndim = len(shape)
        axes = [{"name": name, "type": "space", "unit": "millimeter"}
                for name in _AXES[-min(ndim, 3):]]
        axes = [{"name": f"axis {i}"} for i in range(ndim - len(axes))] + axes
        scale = [1.0] * (ndim - min(ndim, 3)) + [float(s) for s in (spacing or [])][-3:]
        scale += [1.0] * (ndim - len(scale))
        group = zarr.open_group(store=str(self.tmp), mode="w", zarr_format=2)
        group.attrs.update({
            "multiscales": [{"version": "0.4", "name": path.stem, "axes": axes,
                             "datasets": [{"path": "0", "coordinateTransformations": [
                                 {"type": "scale", "scale": scale}]}]}],
            ATTRIBUTE: {"classes": list(class_names or [])},
        })
        chunks = (*(1,) * (ndim - 2), *shape[-2:])
        self.array = group.create_array("0", shape=shape, chunks=chunks, dtype=np.uint8,
                                        fill_value=0)

    def commit(self) -> Path:
        """Move the finished store to its destination (replacing an older store there)."""
        old = None
        if self.path.exists():
            old = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex[:12]}.old"
            os.replace(self.path, old)
        try:
            os.replace(self.tmp, self.path)
        except BaseException:
            if old is not None:
                os.replace(old, self.path)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        """Remove the unfinished store; the destination is untouched."""
        with contextlib.suppress(OSError):
            shutil.rmtree(self.tmp)


def write_zarr_labels(path: Path, labels: np.ndarray, like: Volume | None = None,
                      class_names: list[str] | None = None) -> Path:
    """Write an in-memory label image as an OME-Zarr labels store (atomically)."""
    writer = ZarrLabelsWriter(path, labels.shape, None if like is None else like.spacing,
                              class_names)
    try:
        write_slices(writer.array, 0, labels.reshape(-1, *labels.shape[-2:]))
        return writer.commit()
    except BaseException:
        writer.abort()
        raise
