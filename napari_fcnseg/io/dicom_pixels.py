"""Decoding DICOM pixel data, compressed or not, with a plain message when it cannot be done.

pydicom decodes RLE itself; JPEG Lossless needs GDCM, JPEG baseline and JPEG 2000 Pillow (or
GDCM), JPEG-LS pyjpegls (or GDCM): all dependencies of this package. For other syntaxes (HTJ2K:
pylibjpeg with pylibjpeg-openjpeg) the message names what to install.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.pixels import get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from napari_fcnseg.io.base import ImageReadError

#: Transfer syntaxes newer than some pydicom releases (named in the message that refuses them).
_NEWER_SYNTAXES = {
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
}
#: pydicom names decoders by import name; pip needs the distribution's name.
_PYPI_NAMES = {"gdcm": "python-gdcm", "PIL": "pillow", "jpeg_ls": "pyjpegls"}


def _installs(decoder: Any) -> list[str]:
    """``pip install ...`` lines for the decoders of a syntax that lack their packages."""
    out = []
    for missing in getattr(decoder, "missing_dependencies", []):
        # "pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg>=2.0"
        need = missing.split(" - requires ", 1)[-1]
        names = re.findall(r"([A-Za-z][\w.-]*)\s*[<>=!~]", need) or need.split(" and ")
        out.append("pip install " + " ".join(_PYPI_NAMES.get(n, n) for n in names))
    return out


def _decoder(syntax: UID, path: Path) -> Any:
    """The decoder for a compressed ``syntax`` (None if uncompressed), or a plain refusal.

    pydicom decodes RLE itself; JPEG Lossless needs GDCM, JPEG baseline and JPEG 2000 Pillow
    (or GDCM), JPEG-LS pyjpegls (or GDCM): all dependencies of this package. For other
    syntaxes (HTJ2K: pylibjpeg with pylibjpeg-openjpeg) the message names what to install.
    """
    if not syntax.is_transfer_syntax:
        name = _NEWER_SYNTAXES.get(str(syntax), "")
        raise ImageReadError(
            f"the pixel data use the transfer syntax {syntax}{f' ({name})' if name else ''}, "
            f"which pydicom {pydicom.__version__} cannot decode; convert the series to an "
            "uncompressed transfer syntax (e.g. gdcmconv --raw)",
            path,
        )
    if not syntax.is_compressed:
        return None
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        decoder = None
    if decoder is not None and decoder.is_available:
        return decoder
    installs = _installs(decoder)
    if not installs:
        raise ImageReadError(
            f"the pixel data are compressed as {syntax.name}, which no decoder of pydicom "
            f"{pydicom.__version__} reads; convert the series (e.g. gdcmconv --raw)",
            path,
        )
    raise ImageReadError(
        f"the pixel data are compressed as {syntax.name} and no installed decoder reads it; "
        f"{' or '.join(installs)}",
        path,
    )


def decode_pixels(path: Path) -> np.ndarray:
    """Decode all frames of one file (kept out of the header cache to save memory)."""
    ds = pydicom.dcmread(path, force=True)
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):  # raw data set, no meta
        implicit, little = getattr(ds, "original_encoding", None) or (True, True)
        syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax if little else ExplicitVRBigEndian
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    decoder = _decoder(syntax, path)
    try:
        return np.asarray(ds.pixel_array)
    except MemoryError:
        raise
    except Exception as exc:  # one line, plus the decoders this machine lacks
        lines = (" ".join(line.split()) for line in str(exc).splitlines())
        message = "; ".join(line for line in lines if line).replace(":; ", ": ")
        if decoder is not None:
            message = f"{syntax.name}, {ds.get('BitsStored', '?')} bits stored: {message}"
            if others := _installs(decoder):
                message += f"; another decoder may read it: {' or '.join(others)}"
        raise ImageReadError(f"cannot decode the pixel data ({message})", path) from exc


