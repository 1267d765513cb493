"""Reading and writing medical images (TIFF, NIfTI, DICOM) in napari axis order.

Only numpy, tifffile, nibabel and pydicom are used here: no torch, Qt or napari.
"""

from napari_fcnseg.io.base import ImageReadError, ImageWriteError, Volume, atomic_write
from napari_fcnseg.io.volume import (
    READERS,
    SUPPORTED_SUFFIXES,
    is_supported,
    read_volume,
    write_image,
    write_labels,
)

__all__ = [
    "SUPPORTED_SUFFIXES",
    "ImageReadError",
    "ImageWriteError",
    "READERS",
    "Volume",
    "atomic_write",
    "is_supported",
    "read_volume",
    "write_image",
    "write_labels",
]
