"""Intensity normalisation: the same anatomy gives the same network input whatever the dtype.

CT (declared, or detected from a Hounsfield-unit range) is clipped to a fixed HU window so
scans are comparable; anything else (MR, microscopy, 8/16-bit exports) is scaled between robust
percentiles computed over the whole volume. Both land in [0, 1] as float32.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .arrays import LazyArray, as_image, sample_values

CT_WINDOW = (-250.0, 350.0)
PERCENTILES = (0.5, 99.5)
_MAX_SAMPLES = 2_000_000


class NonFiniteWarning(UserWarning):
    """Warned when NaN or infinite voxels were replaced before segmentation."""


@dataclass(frozen=True)
class Normalizer:
    """A fitted intensity mapping ``(x - low) / (high - low)`` clipped to [0, 1].

    Attributes
    ----------
    low, high : float
        Input values mapped to 0 and 1.
    modality : str
        ``"CT"`` when a fixed HU window is used, else ``"other"``.
    fill : float
        Value that replaces NaN / inf voxels.
    """

    low: float
    high: float
    modality: str
    fill: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Map ``x`` (any real dtype) to float32 in [0, 1]."""
        span = self.high - self.low
        span = span if np.isfinite(span) and span > 0 else 1.0
        # float32 cannot tell values apart far from zero (uint64 near 2**64, 1e20): float64 then
        precise = max(abs(self.low), abs(self.high)) > 1e6 * span
        dtype = np.float64 if precise else np.float32
        out: np.ndarray = np.asarray(x, dtype=dtype)
        if not np.isfinite(out).all():
            out = np.nan_to_num(out, nan=self.fill, posinf=self.fill, neginf=self.fill)
        out = (out - dtype(self.low)) * dtype(1.0 / span)
        return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def looks_like_ct(image: np.ndarray | LazyArray) -> bool:
    """Return True when the values look like CT Hounsfield units.

    A signed or float image whose low end sits near air (-1000 HU) and whose high end stays
    below about 4000 HU is taken as CT. Unsigned 8/16-bit data is never CT by this rule.
    """
    if image.dtype.kind == "u" or image.dtype == np.bool_ or image.size == 0:
        return False
    s = sample_values(image)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return False
    return _hu_range(*np.percentile(s, PERCENTILES))


def _hu_range(lo: float, hi: float) -> bool:
    """True when robust low/high values look like air and tissue/bone in HU."""
    return bool(-1100 <= lo <= -500 and 0 < hi <= 4000)


def fit_normalizer(image: np.ndarray | LazyArray, modality: str = "auto") -> Normalizer:
    """Fit the intensity mapping for ``image``.

    Parameters
    ----------
    image : numpy.ndarray or array-like
        Any real-valued array (bool, integer or float), in memory or lazy (dask, zarr: then
        fitted on evenly spaced slices, see :func:`~napari_fcnseg.core.arrays.sample_values`).
        NaN/inf voxels are ignored for the fit and replaced by the minimum finite value, with a
        :class:`NonFiniteWarning`.
    modality : {"auto", "CT", "MR", "other"}
        ``"CT"`` forces the fixed HU window, ``"MR"``/``"other"`` forces percentile scaling,
        ``"auto"`` detects CT from the value range.

    Returns
    -------
    Normalizer
        Call it on the image (or any part of it) to get float32 in [0, 1].

    Raises
    ------
    ValueError
        If the image is empty, complex, or contains no finite value.
    """
    image = as_image(image)
    if image.size == 0:
        raise ValueError("the image is empty")
    if image.dtype.kind not in "biuf":
        raise ValueError(f"cannot segment an image of dtype {image.dtype}; expected numbers")
    s = sample_values(image)
    finite = np.isfinite(s)
    if not finite.all():
        if not finite.any():
            raise ValueError("the image contains no finite values (all NaN or infinite)")
        warnings.warn(
            "the image contains NaN or infinite values; they were treated as the lowest "
            "intensity", NonFiniteWarning, stacklevel=2)
        s = s[finite]
    fill = float(s.min())
    modality = modality.upper() if modality.lower() == "ct" else modality.lower()
    if modality not in ("auto", "CT", "mr", "other"):
        raise ValueError(f"unknown modality {modality!r}; use 'auto', 'CT', 'MR' or 'other'")
    lo, hi = np.percentile(s, PERCENTILES)
    if modality == "auto":
        signed = image.dtype.kind in "if"
        modality = "CT" if signed and _hu_range(lo, hi) else "other"
    if modality == "CT":
        return Normalizer(CT_WINDOW[0], CT_WINDOW[1], "CT", fill)
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        lo, hi = float(s.min()), float(s.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):  # a constant image: everything maps to 0
        hi = lo + max(1.0, abs(lo) * 1e-6)  # a step float64 can resolve, even near 1e20
    return Normalizer(float(lo), float(hi), "other", fill)


def normalize(image: np.ndarray, modality: str = "auto") -> np.ndarray:
    """Return ``image`` as float32 in [0, 1]; see :func:`fit_normalizer`."""
    return fit_normalizer(image, modality)(image)
