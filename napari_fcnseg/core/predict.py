"""Slice-wise inference for 2D images, 3D volumes and volumes with extra leading axes.

:func:`predict_iter` is a generator that yields :class:`~napari_fcnseg.core.progress.Progress`
after every batch, so callers can show progress and cancel (stop iterating) between batches;
:func:`predict` runs it to completion. Slices larger than ``tile_size`` are segmented in
overlapping tiles blended with a smooth weight, so a 4096 x 4096 slice does not run out of memory.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .arrays import LazyArray, as_image, is_lazy, read_slice, write_slices
from .device import pick_device
from .nets import SegmentationNet, fuse_for_inference, pad_to_multiple
from .normalize import Normalizer, fit_normalizer
from .progress import Progress, run_to_completion
from .slices import slice_count

PROBABILITY_DTYPES = ("float32", "uint8")


@dataclass
class Prediction:
    """Result of :func:`predict_iter`.

    Attributes
    ----------
    labels : numpy.ndarray or array-like
        uint8 class per voxel, same shape as the input (``out`` when given); slices not
        predicted are 0 (or left as they were in ``out``).
    probabilities : numpy.ndarray or None
        (C, *input shape) float32 in [0, 1] or uint8 in [0, 255], when asked for.
    slices : list of int
        Slice indices (along the slice axis) that were predicted.
    uncertainty : dict of int to float
        Slice -> how unsure the model was there (see :func:`slice_uncertainty`), when asked.
    """

    labels: np.ndarray
    probabilities: np.ndarray | None
    slices: list[int]
    uncertainty: dict[int, float] = field(default_factory=dict)


def entropy_map(probabilities: np.ndarray) -> np.ndarray:
    """Per-pixel normalised entropy of (C, ...) probabilities as uint8 (0 certain, 255 torn).

    ``probabilities`` may be float in [0, 1] or uint8 in [0, 255] (as :func:`predict_iter`
    returns them).
    """
    probs = np.asarray(probabilities, np.float32)
    if np.asarray(probabilities).dtype == np.uint8:
        probs = probs / 255.0
    probs = probs / np.maximum(probs.sum(0, keepdims=True), 1e-6)
    entropy = -(probs * np.log(np.maximum(probs, 1e-8))).sum(0) / np.log(max(2, len(probs)))
    return np.rint(np.clip(entropy, 0, 1) * 255).astype(np.uint8)


def slice_uncertainty(probs: torch.Tensor) -> torch.Tensor:
    """How unsure the model is on each slice of a (B, C, H, W) batch of probabilities.

    The mean normalised entropy (0 = certain, 1 = uniform) over the slice's foreground region:
    the pixels predicted as any foreground class or given a foreground probability above 0.1,
    where corrections are made. A slice without any such pixel scores 0.
    """
    entropy = -(probs * probs.clamp_min(1e-8).log()).sum(1) / np.log(max(2, probs.shape[1]))
    region = (probs.argmax(1) != 0) | (probs[:, 0] < 0.9)
    counts = region.sum((1, 2)).clamp_min(1)
    return (entropy * region).sum((1, 2)) / counts


def prepare_for_inference(net: SegmentationNet, device: torch.device) -> SegmentationNet:
    """Return an eval-mode copy of ``net`` on ``device``, BatchNorm folded, channels_last on CPU."""
    fast = fuse_for_inference(copy.deepcopy(net).eval())
    fast.config = net.config
    fast = fast.to(device)
    if device.type == "cpu":
        # Module.to accepts memory_format at run time; torch's type stubs leave it out
        fast = fast.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return fast


#: Network arithmetic for :func:`predict_iter`'s ``precision``: None runs in float32.
AUTOCAST: dict[str, torch.dtype | None] = {
    "float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16,
}


def _autocast(device: torch.device, precision: str):
    """A context running the network in ``precision`` (a no-op for float32)."""
    dtype = AUTOCAST[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def _blend_weight(h: int, w: int) -> torch.Tensor:
    """A separable ramp that is 1 in the middle and small at the edges of a tile."""
    def ramp(n: int) -> torch.Tensor:
        edge = max(1, n // 8)
        r = torch.ones(n)
        r[:edge] = torch.linspace(0.05, 1.0, edge)
        r[n - edge:] = torch.linspace(1.0, 0.05, edge)
        return r
    return ramp(h)[:, None] * ramp(w)[None, :]


def _run_net(net: SegmentationNet, x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Class logits for a (B, C, H, W) batch of any H x W."""
    padded, (h, w) = pad_to_multiple(x, multiple)
    if padded.device.type == "cpu":
        padded = padded.contiguous(memory_format=torch.channels_last)
    return net(padded)[..., :h, :w].float()


def _probabilities_tiled(
    net: SegmentationNet, x: torch.Tensor, multiple: int, tile: int, overlap: int
) -> torch.Tensor:
    """Softmax probabilities for one (1, C, H, W) slice larger than a tile."""
    _, _, h, w = x.shape
    th, tw = min(tile, h), min(tile, w)
    acc = torch.zeros((net.config.num_classes, h, w))
    weight_sum = torch.zeros((h, w))
    weight = _blend_weight(th, tw)
    for y0 in _tile_starts(h, th, overlap):
        for x0 in _tile_starts(w, tw, overlap):
            probs = _run_net(net, x[..., y0:y0 + th, x0:x0 + tw], multiple)[0].softmax(0).cpu()
            acc[:, y0:y0 + th, x0:x0 + tw] += probs * weight
            weight_sum[y0:y0 + th, x0:x0 + tw] += weight
    return (acc / weight_sum)[None]


def predict_iter(
    net: SegmentationNet,
    image: np.ndarray | LazyArray,
    *,
    slices: Sequence[int] | None = None,
    modality: str = "auto",
    normalizer: Normalizer | None = None,
    batch_size: int | None = None,
    tile_size: int = 1024,
    tile_overlap: int = 128,
    probabilities: str | None = None,
    uncertainty: bool = False,
    device: str | torch.device | None = None,
    out=None,
    precision: str = "float32",
) -> Generator[Progress, None, Prediction]:
    """Segment ``image`` slice by slice, yielding progress after every batch.

    Parameters
    ----------
    net : SegmentationNet
        A network from :func:`napari_fcnseg.core.nets.build_network` (weights loaded).
    image : numpy.ndarray or array-like
        (Y, X), (Z, Y, X) or (..., Z, Y, X) real-valued array. Slices run along axis -3;
        neighbouring slices feed the network's extra input channels. A lazy array (dask, zarr,
        memory map) is read a few slices at a time and never loaded whole.
    slices : sequence of int, optional
        Only these slices; default all. Indices count slices of ``image.reshape(-1, Y, X)``:
        the z index for a 3D volume, ``t * Z + z`` with a leading time axis, 0 for a 2D image.
    modality : str
        Passed to :func:`~napari_fcnseg.core.normalize.fit_normalizer` (``"auto"``, ``"CT"``,
        ``"MR"``, ``"other"``).
    normalizer : Normalizer, optional
        A pre-fitted intensity mapping; overrides ``modality``.
    batch_size : int, optional
        Slices per forward pass; default 1 on the CPU (fastest per slice there: the
        activations of one slice stay in cache) and 8 on a GPU.
    tile_size, tile_overlap : int
        Slices with a side longer than ``tile_size`` are run in overlapping tiles.
    probabilities : {None, "float32", "uint8"}
        Also return per-class probabilities in this dtype.
    uncertainty : bool
        Also score every slice by how unsure the model was (:func:`slice_uncertainty`), to
        guide review.
    device : str or torch.device, optional
        Where to run; see :func:`~napari_fcnseg.core.device.pick_device`.
    out : array-like, optional
        A uint8 array of the image's shape to write the labels into (a zarr array for an
        image larger than memory); default a new numpy array. Slices not predicted are left
        as they are.
    precision : {"float32", "float16", "bfloat16"}
        Arithmetic of the network: float16/bfloat16 run it under :func:`torch.autocast`
        (meant for GPUs; logits are compared in float32 either way).

    Yields
    ------
    Progress
        After each batch.

    Returns
    -------
    Prediction
        Labels (uint8, same shape as ``image``), optional probabilities, predicted slices.
    """
    image = as_image(image)
    if image.ndim < 2:
        raise ValueError(f"expected a 2D image or a stack of slices, got {image.ndim}D")
    if probabilities not in (None, *PROBABILITY_DTYPES):
        raise ValueError(f"probabilities must be None, 'float32' or 'uint8', not {probabilities!r}")
    if min(image.shape[-2:]) < 1:
        raise ValueError("the image is empty")
    shape = tuple(int(n) for n in image.shape)
    if probabilities and is_lazy(image):
        raise ValueError("probabilities need the image in memory; this one is read on demand")
    if out is not None and (tuple(out.shape) != shape or np.dtype(out.dtype) != np.uint8):
        raise ValueError(f"out must be a uint8 array of the image's shape {shape}, not "
                         f"{np.dtype(out.dtype)} {tuple(out.shape)}")
    norm = normalizer or fit_normalizer(image, modality)
    nz = shape[-3] if len(shape) >= 3 else 1
    n_vol = slice_count(shape) // nz
    chosen = sorted({int(s) for s in (range(n_vol * nz) if slices is None else slices)})
    if any(s < 0 or s >= n_vol * nz for s in chosen):
        raise ValueError(f"slice indices must lie in 0..{n_vol * nz - 1}")
    dev = device if isinstance(device, torch.device) else pick_device(device)
    if precision not in AUTOCAST:
        raise ValueError(f"precision must be one of {', '.join(AUTOCAST)}, not {precision!r}")
    fast = prepare_for_inference(net, dev)
    multiple = getattr(net, "multiple", 32)
    context = net.config.context
    n_classes = net.config.num_classes

    labels = np.zeros(shape, np.uint8) if out is None else out
    probs_out = None
    if probabilities:
        probs_out = np.zeros((n_classes, n_vol, nz, *shape[-2:]), np.dtype(probabilities))
    tiled = max(shape[-2:]) > tile_size
    if batch_size is None:
        batch_size = 1 if dev.type == "cpu" else 8
    step = 1 if tiled else max(1, batch_size)
    per_volume = [[k % nz for k in chosen if k // nz == v] for v in range(n_vol)]
    batches = [(v, zs[i:i + step])
               for v, zs in enumerate(per_volume) for i in range(0, len(zs), step)]
    offsets = np.arange(-context, context + 1)
    normed: dict[tuple[int, int], np.ndarray] = {}  # each slice is read and normalised once
    scores: dict[int, float] = {}
    with torch.inference_mode():
        for done, (v, batch) in enumerate(batches, start=1):
            rows = np.clip(np.asarray(batch)[:, None] + offsets[None, :], 0, nz - 1)
            for key in [k for k in normed if k[0] != v or k[1] < rows.min()]:
                del normed[key]  # neighbours behind us are not needed again
            for z in np.unique(rows):
                if (v, z) not in normed:
                    normed[(v, z)] = norm(read_slice(image, v * nz + int(z)))
            x = torch.from_numpy(np.stack([[normed[(v, z)] for z in r] for r in rows]))
            if dev.type == "cuda":  # page-locked: the copy overlaps the previous batch's work
                x = x.pin_memory().to(dev, non_blocking=True)
            else:
                x = x.to(dev)
            with _autocast(dev, precision):
                if tiled:
                    p = _probabilities_tiled(fast, x, multiple, tile_size, tile_overlap)
                else:
                    p = _run_net(fast, x, multiple)
            if not tiled:
                if probs_out is not None or uncertainty:
                    p = p.softmax(dim=1)
                p = p.cpu()
            if uncertainty:
                for z, score in zip(batch, slice_uncertainty(p).tolist(), strict=True):
                    scores[v * nz + int(z)] = round(float(score), 5)
            predicted = p.argmax(dim=1).to(torch.uint8).numpy()
            for z, plane in zip(batch, predicted, strict=True):
                write_slices(labels, v * nz + int(z), plane[None])
            if probs_out is not None:
                planes = p.permute(1, 0, 2, 3).numpy()
                if probabilities == "uint8":
                    planes = np.rint(planes * 255)
                probs_out[:, v, batch] = planes
            yield Progress(done, len(batches), f"segmented {done} of {len(batches)} batches")
    if probs_out is not None:
        probs_out = probs_out.reshape((n_classes, *shape))
    return Prediction(labels, probs_out, chosen, scores)


def predict(net: SegmentationNet, image: np.ndarray, **kwargs) -> Prediction:
    """Segment ``image``; the non-generator form of :func:`predict_iter` (same arguments)."""
    return run_to_completion(predict_iter(net, image, **kwargs))
