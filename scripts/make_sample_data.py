"""Write the sample volumes in sample_data/ from the seeded generator.

Usage: python scripts/make_sample_data.py
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile

from napari_fcnseg.core.phantoms import generate_volume

OUT = Path(__file__).resolve().parents[1] / "sample_data"
SHAPE = (32, 256, 256)


def nifti(data: np.ndarray, spacing, path: Path) -> None:
    """Save (z, y, x) data as NIfTI: columns run to the patient's left, rows to posterior.

    That is the radiological display of an axial slice (anterior at the top, the patient's
    right on the left of the screen); in NIfTI's RAS world it is a diagonal affine with
    negated x and y.
    """
    affine = np.diag([-spacing[2], -spacing[1], spacing[0], 1.0])
    img = nib.Nifti1Image(np.ascontiguousarray(data.transpose(2, 1, 0)), affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, path)


def tiff(data: np.ndarray, spacing, path: Path) -> None:
    """Save an ImageJ TIFF stack with its voxel size recorded."""
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / spacing[2], 1 / spacing[1]),
                     metadata={"spacing": spacing[0], "unit": "mm", "axes": "ZYX"},
                     compression="zlib")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    ct = generate_volume("CT", SHAPE, seed=2024)
    nifti(ct.image, ct.spacing, OUT / "ct_abdomen.nii.gz")
    nifti(ct.labels, ct.spacing, OUT / "ct_abdomen_labels.nii.gz")
    mr = generate_volume("MR", SHAPE, seed=2025)
    tiff(np.clip(np.rint(mr.image), 0, 65535).astype(np.uint16), mr.spacing,
         OUT / "mr_abdomen.tif")
    tiff(mr.labels, mr.spacing, OUT / "mr_abdomen_labels.tif")
    for p in sorted(OUT.glob("*_abdomen*")):
        print(f"{p.name}: {p.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
