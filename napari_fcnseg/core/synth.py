"""Domain-randomised training images: random anatomy, random contrast, the bundled classes.

The generated phantoms (:mod:`.phantoms`) look like one CT and one MR protocol, so a network
trained on them alone learns their look. Here every volume draws a new "protocol", following
the idea of SynthSeg (Billot et al., Medical Image Analysis 2023): a random label map of
background tissues (smooth random regions, 3-10 of them), an organ (one large smooth region)
and lesions (small compact blobs inside it), each with a random mean intensity and texture,
then a random bias field, blur (resolution), gamma, noise and, sometimes, inverted contrast.
Nothing but shape and context tells the organ and the lesions apart from the rest: a lesion
is as often darker as brighter than its organ, and the background holds regions of every
intensity. Labels follow the bundled model's classes: 0 background, 1 organ, 2 lesion.

The images are returned normalised to [0, 1] the way the network sees non-CT images at
inference (:func:`~napari_fcnseg.core.normalize.fit_normalizer`), sometimes with a narrower
window on top, as CT windowing saturates bone and air.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .normalize import fit_normalizer

__all__ = ["SyntheticVolume", "synthetic_volume"]


@dataclass
class SyntheticVolume:
    """One domain-randomised volume: ``image`` float32 in [0, 1], ``labels`` uint8 (0, 1, 2)."""

    image: np.ndarray
    labels: np.ndarray


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], scale: float,
                  z_scale: float = 4.0) -> np.ndarray:
    """Smooth random field, about zero mean and unit spread, varying over ``scale`` pixels."""
    coarse = (max(2, int(np.ceil(shape[0] / z_scale)) + 1),
              max(2, int(np.ceil(shape[1] / scale)) + 1),
              max(2, int(np.ceil(shape[2] / scale)) + 1))
    noise = rng.standard_normal(coarse).astype(np.float32)
    zoom = [(n + 2) / c for n, c in zip(shape, coarse, strict=True)]
    field = ndimage.zoom(noise, zoom, order=1, mode="nearest", grid_mode=True)
    field = field[1:shape[0] + 1, 1:shape[1] + 1, 1:shape[2] + 1]
    return (field - field.mean()) / max(float(field.std()), 1e-6)


def _organ(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """One large smooth region near the middle, changing a little from slice to slice."""
    nz, h, w = shape
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.12, 0.38) * h, rng.uniform(0.12, 0.38) * w
    yy = (np.arange(h, dtype=np.float32)[None, :, None] - cy) / ry
    xx = (np.arange(w, dtype=np.float32)[None, None, :] - cx) / rx
    dist = np.sqrt(yy * yy + xx * xx)
    wobble = rng.uniform(0.1, 0.35) * _smooth_field(rng, shape, rng.uniform(0.1, 0.25) * h)
    return (dist + wobble) < 1.0


def _lesions(rng: np.random.Generator, organ: np.ndarray) -> np.ndarray:
    """0-4 small compact blobs inside the organ (radius 2-14 pixels, 1-3 slices deep)."""
    nz, h, w = organ.shape
    lesions = np.zeros(organ.shape, bool)
    inside = np.argwhere(organ[nz // 2])
    if not len(inside):
        return lesions
    zz = np.arange(nz, dtype=np.float32)[:, None, None]
    yy = np.arange(h, dtype=np.float32)[None, :, None]
    xx = np.arange(w, dtype=np.float32)[None, None, :]
    for _ in range(int(rng.integers(0, 5))):
        cy, cx = inside[rng.integers(len(inside))]
        cz = nz // 2 + rng.uniform(-1.5, 1.5)
        r, rz = rng.uniform(2, 14), rng.uniform(0.8, 3.0)
        dist = np.sqrt(((zz - cz) / rz) ** 2 + ((yy - cy) / r) ** 2 + ((xx - cx) / r) ** 2)
        lesions |= dist < 1.0 + 0.15 * rng.standard_normal()
    return lesions & organ


def synthetic_volume(seed: int, shape: tuple[int, int, int] = (7, 224, 224)) -> SyntheticVolume:
    """Generate one domain-randomised volume.

    Parameters
    ----------
    seed : int
        Seeds everything: the same seed gives the same volume.
    shape : tuple of int
        (slices, height, width); a few slices are enough for 2.5D training crops.

    Returns
    -------
    SyntheticVolume
        The image normalised to [0, 1] and its labels (0 background, 1 organ, 2 lesion).
    """
    rng = np.random.default_rng(seed)
    h = shape[1]
    n_tissues = int(rng.integers(3, 11))
    fields = np.stack([_smooth_field(rng, shape, rng.uniform(0.04, 0.25) * h)
                       for _ in range(n_tissues)])
    tissue = np.argmax(fields, axis=0).astype(np.int32)
    del fields
    organ = _organ(rng, shape) if rng.random() < 0.9 else np.zeros(shape, bool)
    lesions = _lesions(rng, organ)
    tissue[organ] = n_tissues
    tissue[lesions] = n_tissues + 1

    means = rng.uniform(0.0, 1.0, n_tissues + 2).astype(np.float32)
    organ_mean = means[n_tissues]
    step = rng.uniform(0.12, 0.45)
    darker = rng.random() < 0.5
    if (darker and organ_mean - step < 0) or (not darker and organ_mean + step > 1):
        darker = not darker
    means[n_tissues + 1] = np.clip(organ_mean - step if darker else organ_mean + step, 0, 1)
    spread = rng.uniform(0.0, 0.06, n_tissues + 2).astype(np.float32)
    texture = _smooth_field(rng, shape, rng.uniform(1.0, 4.0), z_scale=1.0)
    image = means[tissue] + spread[tissue] * texture

    sigma = rng.uniform(0.0, 1.2)
    if sigma > 0.2:
        image = ndimage.gaussian_filter(image, (0.0, sigma, sigma))
    image = np.clip(image, 0.0, 1.0) ** np.float32(np.exp(rng.normal(0.0, 0.3)))
    if rng.random() < 0.25:
        image = 1.0 - image
    image = image * np.exp(rng.uniform(0.0, 0.35) * _smooth_field(rng, shape, 0.6 * h))
    image = image + rng.normal(0.0, rng.uniform(0.005, 0.06), shape).astype(np.float32)
    image = (image * rng.uniform(100, 2000)).astype(np.float32)
    image = fit_normalizer(image, "MR")(image)
    if rng.random() < 0.4:  # a narrower window, as CT windowing saturates bone and air
        low, high = rng.uniform(0.0, 0.25), rng.uniform(0.6, 1.0)
        image = np.clip((image - low) / (high - low), 0.0, 1.0)
    labels = np.zeros(shape, np.uint8)
    labels[organ] = 1
    labels[lesions] = 2
    return SyntheticVolume(image.astype(np.float32), labels)
