"""Memory for a volume larger than memory: peak RSS of ``napari-fcnseg predict in.zarr out.zarr``.

Writes an int16 zarr volume (default 2048 slices of 1024 x 1024 = 4 GiB of voxels; CT-like
generated slices, one chunk per slice) into ``--work-dir``, segments it with the bundled model
through the command line in a child process, and reports the child's peak RSS (``ru_maxrss``
of the finished child), the time, and the peak RSS of the same command on a small volume (the
fixed cost: Python, torch, the network). The labels store is checked to hold every slice.

Usage::

    python benchmarks/bench_scale.py                       # 4 GiB: minutes on 2 cores
    python benchmarks/bench_scale.py --slices 64           # smoke run
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
    """Write an int16 CT-like zarr volume slice by slice; return its size in bytes."""
    import zarr

    from napari_fcnseg.core.phantoms import generate_volume

    pattern = generate_volume("CT", (16, side, side), 5).image
    array = zarr.open_array(store=str(path), mode="w", shape=(slices, side, side),
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
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(dir=args.work_dir, prefix="fcnseg-scale-"))
    try:
        small, big = work / "small.zarr", work / "big.zarr"
        make_volume(small, 4, args.side)
        t = time.perf_counter()
        nbytes = make_volume(big, args.slices, args.side)
        print(f"wrote {nbytes / 2**30:.2f} GiB int16 zarr in {time.perf_counter() - t:.0f} s",
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
