"""Segment a cohort: many cases, one after another or as Dask tasks on a cluster.

Both ways run :func:`segment_case` on every case, so a case's output is the same file, byte for
byte, whichever way it ran. With Dask (``napari-fcnseg predict cases/ out/ --workers N`` or
``--scheduler ADDRESS``) the model travels to the workers once as plain weights (no shared model
store needed, so workers on other machines work too), each worker builds the network once and
keeps it, and every worker runs torch with ``cores // N`` threads so N workers do not fight over
the cores. A bad case is reported and skipped; cancelling stops the cases not yet done, and no
partial file is ever left (every writer renames a finished temporary file into place).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported lazily at run time: a Dask worker loads what a case needs
    from napari_fcnseg.core.nets import SegmentationNet
    from napari_fcnseg.core.progress import Progress
    from napari_fcnseg.io import Volume

_NETS: dict[str, SegmentationNet] = {}  # payload key -> built network, per worker process


@dataclass(frozen=True)
class CaseOptions:
    """How every case is segmented (the CLI's options)."""

    modality: str = "auto"
    device: str | None = None
    batch_size: int | None = None
    threads: int | None = None
    precision: str = "float32"


def unsegmentable(volume: Volume) -> str | None:
    """Why ``volume`` cannot be segmented slice by slice, or None when it can."""
    if volume.data.ndim not in (2, 3, 4):
        return (f"expected a 2D image or a 3D stack, got {volume.data.ndim} dimensions "
                f"{volume.data.shape}")
    return None


def case_modality(asked: str, volume: Volume) -> str:
    """The normalisation for a case: the one asked for, else the file's own CT/MR, else auto."""
    modality = asked if asked != "auto" else (volume.modality or "auto")
    if modality not in ("CT", "MR"):
        modality = "auto" if modality == "auto" else "other"
    return modality


def model_payload(loaded: Any) -> dict[str, Any]:
    """The model as plain data a Dask worker can rebuild: config, weights, names, key."""
    state = {k: v.detach().cpu() for k, v in loaded.net.state_dict().items()}
    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes())
    return {"key": digest.hexdigest(), "config": loaded.net.config.to_dict(), "state": state,
            "classes": list(loaded.class_names), "name": loaded.name}


def _network(payload: dict[str, Any]) -> Any:
    """The payload's network, built once per process."""
    net = _NETS.get(payload["key"])
    if net is None:
        from napari_fcnseg.core.nets import build_network

        net = build_network(payload["config"])
        net.load_state_dict(payload["state"])
        net.eval()
        _NETS.clear()  # one model at a time per worker
        _NETS[payload["key"]] = net
    return net


def segment_case(payload: dict[str, Any], src: str, dst: str, options: CaseOptions,
                 progress: Callable[[Progress], None] | None = None) -> tuple[str, str]:
    """Read, segment and write one case; return ("wrote", path) or ("skipped", why).

    Problems a case can have (unreadable, wrong shape, unwritable output) are returned, not
    raised, so one bad case never stops a cohort.
    """
    from napari_fcnseg import __version__
    from napari_fcnseg.core.predict import predict_iter
    from napari_fcnseg.core.progress import run_to_completion
    from napari_fcnseg.io import read_volume, write_labels

    if options.threads:
        import torch

        torch.set_num_threads(options.threads)
    try:
        volume = read_volume(Path(src))
        problem = unsegmentable(volume)
        if problem:
            return "skipped", problem
        work = predict_iter(_network(payload), volume.data,
                            modality=case_modality(options.modality, volume),
                            device=options.device, batch_size=options.batch_size,
                            precision=options.precision)
        result = run_to_completion(work, progress)
        written = write_labels(dst, result.labels, like=volume, class_names=payload["classes"],
                               model_name=payload["name"], software_version=__version__)
    except (ValueError, OSError) as exc:
        return "skipped", str(exc)
    return "wrote", str(written)


def run_on_dask(client: Any, payload: dict[str, Any], jobs: Sequence[tuple[str, str]],
                options: CaseOptions) -> Iterator[tuple[int, tuple[str, str]]]:
    """Submit every (src, dst) job to ``client``; yield (job index, outcome) as cases finish.

    Stopping the iteration (or Ctrl-C) cancels the cases that have not finished.
    """
    from distributed import as_completed

    shared = client.scatter(payload, broadcast=True)
    futures = [client.submit(segment_case, shared, src, dst, options, pure=False,
                             key=f"napari-fcnseg-case-{i}-{os.getpid()}")
               for i, (src, dst) in enumerate(jobs)]
    index = {f.key: i for i, f in enumerate(futures)}
    try:
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except Exception as exc:  # noqa: BLE001 - a worker died or the task failed
                outcome = ("skipped", f"{type(exc).__name__}: {exc}")
            yield index[future.key], outcome
    finally:
        client.cancel([f for f in futures if not f.done()])


def local_client(workers: int) -> Any:
    """A Dask client on an embedded LocalCluster of ``workers`` processes, 1 thread each."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    return Client(cluster)


def threads_per_worker(workers: int) -> int:
    """Threads torch may use in each of ``workers`` workers sharing this machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))
