"""Memory for a volume larger than memory: peak RSS of ``napari-fcnseg predict in.zarr out.zarr``.

Writes an int16 zarr volume (default 2048 slices of 1024 x 1024 = 4 GiB of voxels; CT-like
generated slices, one chunk per slice) into ``--work-dir``, segments it with the bundled model
through the command line in a child process, and reports the child's peak RSS (``ru_maxrss``
of the finished child), the time, and the peak RSS of the same command on a small volume (the
fixed cost: Python, torch, the network). The labels store is checked to hold every slice.

Usage::

    python benchmarks/bench_scale.py                       # 4 GiB: minutes on 2 cores
    python benchmarks/bench_scale.py --slices 64           # smoke run
    python benchmarks/bench_scale.py --input nifti         # an uncompressed .nii in, streamed
    python benchmarks/bench_scale.py --input tiff          # an uncompressed TIFF stack in
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_volume(path: Path, slices: int, side: int) -> int:
    """Write an int16 CT-like volume slice by slice (zarr, .nii or .tif by suffix); its bytes."""
    from napari_fcnseg.core.phantoms import generate_volume

    pattern = generate_volume("CT", (16, side, side), 5).image
    shape = (slices, side, side)
    if path.suffix == ".nii":  # header, then (x, y, z) in Fortran order: slice after slice
        import nibabel as nib

        header = nib.Nifti1Header()
        header.set_data_dtype(np.int16)
        header.set_data_shape((side, side, slices))
        header.set_zooms((0.7, 0.7, 1.0))
        header.set_qform(np.diag([-0.7, -0.7, 1.0, 1.0]), code=1)
        header["vox_offset"] = 352
        with open(path, "wb") as fh:
            header.write_to(fh)
            fh.write(b"\0" * (352 - fh.tell()))
            for z in range(slices):
                fh.write(pattern[z % len(pattern)][::-1, ::-1].astype("<i2").tobytes())
    elif path.suffix == ".tif":  # one contiguous uncompressed series, written page by page
        import tifffile

        # not through a memory map: its pages would stay in this process's RSS, and a child
        # started by fork reports the parent's peak as its own (ru_maxrss survives exec)
        with tifffile.TiffWriter(path) as tif:
            for z in range(slices):
                tif.write(pattern[z % len(pattern)], contiguous=True)
    else:
        import zarr

        array = zarr.open_array(store=str(path), mode="w", shape=shape,
                                chunks=(1, side, side), dtype=np.int16)
        for z in range(slices):
            array[z] = pattern[z % len(pattern)]
    return slices * side * side * 2


def run_cli(src: Path, dst: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of the predict command in a fresh child process."""
    code = ("import resource, sys; from napari_fcnseg.cli import main; "
            "code = main(sys.argv[1:]); "
            "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True); "
            "sys.exit(code)")
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, "predict", str(src), str(dst)],
                         capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"predict failed: {out.stderr[-2000:]}")
    rss_kib = int(next(line.split()[1] for line in out.stdout.splitlines()
                       if line.startswith("RSS")))
    return seconds, rss_kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=2048)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--input", choices=("zarr", "nifti", "tiff"), default="zarr",
                        help="format of the volume segmented (always into a zarr store)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(dir=args.work_dir, prefix="fcnseg-scale-"))
    try:
        suffix = {"zarr": ".zarr", "nifti": ".nii", "tiff": ".tif"}[args.input]
        small, big = work / f"small{suffix}", work / f"big{suffix}"
        make_volume(small, 4, args.side)
        t = time.perf_counter()
        nbytes = make_volume(big, args.slices, args.side)
        print(f"wrote {nbytes / 2**30:.2f} GiB int16 {args.input} in "
              f"{time.perf_counter() - t:.0f} s",
              file=sys.stderr, flush=True)
        s_small, rss_small = run_cli(small, work / "small_labels.zarr")
        s_big, rss_big = run_cli(big, work / "big_labels.zarr")
        import zarr

        labels = zarr.open_group(store=str(work / "big_labels.zarr"), mode="r")["0"]
        assert labels.shape == (args.slices, args.side, args.side)
        assert labels[args.slices - 1].any(), "the last slice was not segmented"
        print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
              f"peak RSS read from the finished child (ru_maxrss)")
        print("\n| volume | voxels (GiB int16) | seconds | peak RSS, MiB |\n|---|---|---|---|")
        print(f"| 4 x {args.side}^2 (fixed cost) | {4 * args.side**2 * 2 / 2**30:.3f} | "
              f"{s_small:.0f} | {rss_small:.0f} |")
        print(f"| {args.slices} x {args.side}^2 | {nbytes / 2**30:.2f} | {s_big:.0f} | "
              f"{rss_big:.0f} |")
        child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"\n(largest child RSS seen by this process: {child:.0f} MiB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
