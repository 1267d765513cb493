"""Seeded generator of CT-like and MR-like volumes with exact labels.

Each volume is an abdomen-like cross-section stack: a body of varied size and shape with a
subcutaneous fat layer, muscle and soft tissue, visceral fat, bowel gas, a vertebra with
cortical and cancellous bone, ribs, a bright distractor (kidney/vessel-like) and one organ
containing focal lesions of varied size, shape and contrast (hypo- and hyper-intense).

Labels are exact: 0 background, 1 organ, 2 lesion. Images are blurred (partial volume) and
noisy. CT volumes are int16 Hounsfield units; MR volumes are float32 arbitrary units with a
smooth bias field and Rician noise. The same ``seed`` always gives the same volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

CLASS_NAMES = ("background", "organ", "lesion")

# tissue codes used internally before mapping to intensities
AIR, FAT, MUSCLE, SOFT, ORGAN, LESION, CORTICAL, MARROW, GAS, BRIGHT = range(10)


@dataclass
class Phantom:
    """A generated volume and its ground truth.

    Attributes
    ----------
    image : numpy.ndarray
        (Z, Y, X) int16 HU for CT, float32 arbitrary units for MR.
    labels : numpy.ndarray
        (Z, Y, X) uint8: 0 background, 1 organ, 2 lesion.
    spacing : tuple of float
        Voxel size (z, y, x) in millimetres.
    modality : str
        ``"CT"`` or ``"MR"``.
    """

    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    modality: str


def _blob(
    grid: tuple[np.ndarray, np.ndarray, np.ndarray],
    center: np.ndarray,
    radii: np.ndarray,
    rng: np.random.Generator,
    roughness: float,
) -> np.ndarray:
    """Boolean mask of a randomly deformed ellipsoid on the broadcastable 1D mm axes.

    Only the bounding box of the shape is evaluated, so small shapes are cheap; a z radius of
    ``np.inf`` gives a shape extruded through every slice.
    """
    shape = tuple(len(g.ravel()) for g in grid)
    mask = np.zeros(shape, bool)
    boxes = []
    for axis, (g, c, r) in enumerate(zip(grid, center, radii, strict=True)):
        axis_mm = g.ravel()
        reach = r * (1.0 + roughness) if np.isfinite(r) else np.inf
        hit = np.nonzero(np.abs(axis_mm - c) <= reach)[0]
        if hit.size == 0:
            return mask
        boxes.append(slice(hit[0], hit[-1] + 1) if np.isfinite(r) else slice(0, 1))
        if axis == 0 and not np.isfinite(r):
            boxes[-1] = slice(0, 1)
    zs, ys, xs = boxes
    dz = (grid[0].ravel()[zs] - center[0]) / radii[0] if np.isfinite(radii[0]) else np.zeros(1)
    dz = dz.astype(np.float32)[:, None, None]
    dy = ((grid[1].ravel()[ys] - center[1]) / radii[1]).astype(np.float32)[None, :, None]
    dx = ((grid[2].ravel()[xs] - center[2]) / radii[2]).astype(np.float32)[None, None, :]
    dist = np.sqrt(dz * dz + dy * dy + dx * dx)
    theta = np.arctan2(dy, dx)
    wobble = np.zeros(np.broadcast_shapes(dz.shape, theta.shape), np.float32)
    for k in range(2, 6):
        amp = roughness * rng.uniform(0.2, 1.0) / k
        wobble += amp * np.cos(k * theta + rng.uniform(0, 2 * np.pi) + rng.uniform(-1, 1) * dz)
    inside = dist < 1.0 + wobble
    if not np.isfinite(radii[0]):
        mask[:, ys, xs] = inside
    else:
        mask[zs, ys, xs] = inside
    return mask


def _anatomy(shape: tuple[int, int, int], spacing: np.ndarray, rng: np.random.Generator):
    """Return (tissue codes, labels) for one volume."""
    nz, ny, nx = shape
    zz = ((np.arange(nz) - (nz - 1) / 2) * spacing[0]).astype(np.float32)[:, None, None]
    yy = ((np.arange(ny) - (ny - 1) / 2) * spacing[1]).astype(np.float32)[None, :, None]
    xx = ((np.arange(nx) - (nx - 1) / 2) * spacing[2]).astype(np.float32)[None, None, :]
    grid = (zz, yy, xx)
    half_w = nx * spacing[2] / 2
    tissue = np.full(shape, AIR, np.uint8)

    # body: a wide ellipse, flatter front-to-back, tapering slowly along z
    body_rx = half_w * rng.uniform(0.72, 0.92)
    body_ry = body_rx * rng.uniform(0.62, 0.85)
    radii = np.array([np.inf, body_ry, body_rx], np.float32)
    body_c = np.array([0.0, rng.uniform(-0.05, 0.05) * body_ry, 0.0], np.float32)
    body = _blob(grid, body_c, radii, rng, 0.12)
    fat_mm = rng.uniform(8, 30)
    inner = _blob(grid, body_c, radii - [0, fat_mm, fat_mm], rng, 0.08)
    tissue[body] = FAT
    tissue[inner] = MUSCLE

    # soft tissue and visceral fat pockets inside the abdominal cavity
    cavity_r = np.array([np.inf, body_ry - fat_mm - 12, body_rx - fat_mm - 12], np.float32)
    cavity = _blob(grid, body_c, cavity_r, rng, 0.1) & inner
    tissue[cavity] = SOFT
    for _ in range(rng.integers(3, 9)):
        c = body_c.copy()
        c[1:] += rng.uniform(-0.6, 0.6, 2) * cavity_r[1:]
        c[0] = rng.uniform(zz.min(), zz.max() + 1e-3)
        r = rng.uniform(8, 30, 3).astype(np.float32)
        tissue[_blob(grid, c, r, rng, 0.3) & cavity] = FAT

    # the organ: a large deformed ellipsoid on one side of the cavity
    side = rng.choice([-1.0, 1.0])
    organ_c = np.array([
        rng.uniform(-0.15, 0.15) * nz * spacing[0],
        rng.uniform(-0.3, 0.1) * cavity_r[1],
        side * rng.uniform(0.25, 0.45) * cavity_r[2],
    ], np.float32)
    organ_r = np.array([
        rng.uniform(0.4, 0.8) * nz * spacing[0] + 10,
        rng.uniform(0.45, 0.7) * cavity_r[1],
        rng.uniform(0.35, 0.55) * cavity_r[2],
    ], np.float32)
    organ = _blob(grid, organ_c, organ_r, rng, 0.35) & cavity
    tissue[organ] = ORGAN

    # bright distractor (kidney / vessel), never labelled
    bc = np.array([organ_c[0], cavity_r[1] * 0.35, -side * cavity_r[2] * rng.uniform(0.3, 0.5)])
    br = np.array([organ_r[0] * 0.7, rng.uniform(10, 25), rng.uniform(10, 25)], np.float32)
    tissue[_blob(grid, bc, br, rng, 0.2) & cavity & ~organ] = BRIGHT

    # bowel gas, away from the organ
    for _ in range(rng.integers(1, 5)):
        c = np.array([rng.uniform(zz.min(), zz.max() + 1e-3),
                      rng.uniform(-0.5, 0.2) * cavity_r[1],
                      -side * rng.uniform(0.0, 0.6) * cavity_r[2]], np.float32)
        r = rng.uniform(4, 14, 3).astype(np.float32)
        tissue[_blob(grid, c, r, rng, 0.2) & cavity & ~organ] = GAS

    # lesions inside the organ
    labels = np.zeros(shape, np.uint8)
    labels[organ] = 1
    lesion_kinds: list[int] = []
    idx = np.argwhere(organ)
    for _ in range(rng.integers(1, 5) if len(idx) else 0):
        c = idx[rng.integers(len(idx))].astype(np.float32)
        c = (c - (np.array(shape) - 1) / 2) * spacing
        r = rng.uniform(4, 18) * rng.uniform(0.7, 1.3, 3).astype(np.float32)
        lesion = _blob(grid, c.astype(np.float32), r, rng, 0.25) & organ
        kind = LESION + 10 * len(lesion_kinds)  # unique code per lesion for its own contrast
        tissue[lesion] = min(kind, 250)
        lesion_kinds.append(min(kind, 250))
        labels[lesion] = 2

    # spine at the back, ribs near the body wall
    sc = np.array([0.0, body_c[1] + body_ry * rng.uniform(0.45, 0.6), 0.0], np.float32)
    sr = rng.uniform(14, 20)
    vert = _blob(grid, sc, np.array([np.inf, sr, sr * 1.1], np.float32), rng, 0.1)
    marrow = _blob(grid, sc, np.array([np.inf, sr - 3, sr * 1.1 - 3], np.float32), rng, 0.05)
    tissue[vert & ~organ] = CORTICAL
    tissue[marrow & ~organ] = MARROW
    for angle in rng.uniform(0.6, 2.5, rng.integers(2, 6)) * rng.choice([-1, 1], 1):
        c = np.array([0.0, -np.sin(angle) * (body_ry - fat_mm - 5),
                      np.cos(angle) * (body_rx - fat_mm - 5)], np.float32)
        tissue[_blob(grid, c, np.array([np.inf, 4, 6], np.float32), rng, 0.1)] = CORTICAL
    return tissue, labels, lesion_kinds


def _textured(
    values: np.ndarray, tissue: np.ndarray, rng: np.random.Generator, amplitude: float
) -> np.ndarray:
    """Map tissue codes to intensities and add low-frequency texture inside the body."""
    texture = ndimage.gaussian_filter(rng.standard_normal(tissue.shape).astype(np.float32), 2.0)
    texture *= amplitude / max(float(texture.std()), 1e-6)
    return values[tissue] + texture * (tissue != AIR)


def generate_volume(
    modality: str = "CT",
    shape: tuple[int, int, int] = (32, 256, 256),
    seed: int = 0,
) -> Phantom:
    """Generate one CT-like or MR-like volume with exact labels.

    Parameters
    ----------
    modality : {"CT", "MR"}
        CT gives int16 Hounsfield units; MR gives float32 arbitrary units.
    shape : tuple of int
        (Z, Y, X) voxels. A 2D slice is ``shape=(1, Y, X)``.
    seed : int
        Seed; the same seed and arguments always give the same volume.

    Returns
    -------
    Phantom
        Image, labels (0 background, 1 organ, 2 lesion), spacing in mm and modality.
    """
    modality = modality.upper()
    if modality not in ("CT", "MR"):
        raise ValueError(f"modality must be 'CT' or 'MR', not {modality!r}")
    rng = np.random.default_rng(seed)
    fov = rng.uniform(300, 420)
    spacing = np.array([rng.uniform(1.0, 5.0), fov / shape[1], fov / shape[2]], np.float32)
    nz, ny, nx = shape
    tissue, labels, lesion_codes = _anatomy((nz, ny, nx), spacing, rng)

    values = np.zeros(256, np.float32)
    if modality == "CT":
        organ_hu = rng.uniform(70, 130)
        values[[AIR, FAT, MUSCLE, SOFT, ORGAN, CORTICAL, MARROW, GAS, BRIGHT]] = [
            -1000, rng.uniform(-120, -80), rng.uniform(35, 55), rng.uniform(20, 45), organ_hu,
            rng.uniform(700, 1400), rng.uniform(250, 400), -950, rng.uniform(180, 260)]
        for code in lesion_codes:
            hypo = rng.random() < 0.65
            delta = -rng.uniform(35, 80) if hypo else rng.uniform(40, 90)
            values[code] = organ_hu + delta
        sigma_xy = rng.uniform(0.5, 1.1)
        image = _textured(values, tissue, rng, amplitude=8.0)
        image = ndimage.gaussian_filter(image, (0.3, sigma_xy, sigma_xy))
        image += rng.normal(0, rng.uniform(6, 22), image.shape).astype(np.float32)
        image = np.clip(np.rint(image), -1024, 3071).astype(np.int16)
    else:
        organ_v = rng.uniform(0.45, 0.7)
        values[[AIR, FAT, MUSCLE, SOFT, ORGAN, CORTICAL, MARROW, GAS, BRIGHT]] = [
            0.0, rng.uniform(0.85, 1.0), rng.uniform(0.25, 0.35), rng.uniform(0.3, 0.42), organ_v,
            0.04, rng.uniform(0.6, 0.8), 0.02, rng.uniform(0.8, 0.95)]
        for code in lesion_codes:
            hypo = rng.random() < 0.5
            values[code] = organ_v * rng.uniform(0.35, 0.7) if hypo else min(
                1.0, organ_v * rng.uniform(1.35, 1.7))
        image = _textured(values, tissue, rng, amplitude=0.03)
        image = ndimage.gaussian_filter(image, (0.3, 0.8, 0.8))
        yy, xx = np.meshgrid(np.linspace(-1, 1, shape[1]), np.linspace(-1, 1, shape[2]),
                             indexing="ij")
        coeffs = rng.uniform(-0.25, 0.25, 5)
        bias = 1 + coeffs[0] * yy + coeffs[1] * xx + coeffs[2] * yy * xx
        bias = bias + coeffs[3] * yy**2 + coeffs[4] * xx**2
        image = image * bias.astype(np.float32)[None]
        sigma = rng.uniform(0.02, 0.05)
        n1 = rng.normal(0, sigma, image.shape).astype(np.float32)
        n2 = rng.normal(0, sigma, image.shape).astype(np.float32)
        image = np.sqrt((image + n1) ** 2 + n2**2) * np.float32(rng.uniform(200, 3000))
        image = image.astype(np.float32)
    dz, dy, dx = (float(s) for s in spacing)
    return Phantom(image, labels, (dz, dy, dx), modality)

