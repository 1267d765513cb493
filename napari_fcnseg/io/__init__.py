"""Reading and writing medical images (TIFF, NIfTI, DICOM) in napari axis order.

Only numpy, tifffile, nibabel and pydicom are used here: no torch, Qt or napari.
"""

from napari_fcnseg.io.volume import (
    SUPPORTED_SUFFIXES,
    ImageReadError,
    ImageWriteError,
    Volume,
    is_supported,
    read_volume,
    write_image,
    write_labels,
)

__all__ = [
    "SUPPORTED_SUFFIXES",
    "ImageReadError",
    "ImageWriteError",
    "Volume",
    "is_supported",
    "read_volume",
    "write_image",
    "write_labels",
]
