"""Processes that hammer one model store at once (used by ``test_store_concurrency.py``).

Two kinds of process share the store folder named by ``NAPARI_FCNSEG_MODEL_DIR``:

- :func:`store_worker`, started with ``multiprocessing`` (spawn), calls
  :class:`~napari_fcnseg.core.store.ModelStore` directly for several rounds of save, import,
  export and delete, in an order that differs per process and round;
- ``python -m tests.reliability.store_worker GATE_DIR WHO ARGS...`` runs the command line
  (``python -m napari_fcnseg.cli ARGS...``, through :func:`runpy.run_module`, as ``-m`` does).

Both import torch and the store first (the slow part of starting), then say they are ready and
wait for one gate file, so that their store operations really overlap. Every value a process
writes into a network is its own (:func:`stamp`), so the test can tell whose weights a model
holds.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

GATE = "go"
TINY = {"base": 4, "depth": 2}
CLASSES = ["background", "organ", "lesion"]


def stamp(net: Any, value: float) -> Any:
    """Set every parameter of ``net`` to ``value`` (the writer's signature); return ``net``."""
    import torch

    with torch.no_grad():
        for param in net.parameters():
            param.fill_(value)
    return net


def tiny_net(value: float) -> Any:
    """A tiny network whose parameters all equal ``value``."""
    from napari_fcnseg.core.nets import NetworkConfig, build_network

    return stamp(build_network(NetworkConfig(**TINY)), value)


def stamp_of(net: Any) -> float | None:
    """The value every parameter of ``net`` holds, or None when they differ (a mixed model)."""
    values = {float(v) for p in net.parameters() for v in p.detach().flatten().unique()}
    return values.pop() if len(values) == 1 else None


def wait_for_gate(gate_dir: Path, who: str, timeout: float = 120.0) -> None:
    """Say ``who`` is ready, then wait until the test opens the gate."""
    (gate_dir / f"ready-{who}").touch()
    end = time.monotonic() + timeout
    while not (gate_dir / GATE).exists():
        if time.monotonic() > end:
            raise TimeoutError("the gate was never opened")
        time.sleep(0.001)


def store_worker(index: int, rounds: int, folder: str, barrier: Any) -> None:
    """Run ``rounds`` rounds of store operations; write what happened to ``w<index>.json``.

    Each round, after all workers reach ``barrier``: save under the name every worker races for
    (``race-<round>``) and under an own name, import this worker's export of model ``t`` (every
    export is of a model called ``t``, so imports race for ``t``, ``t-2``, ...), export a kept
    model to the file every process writes (``shared.pt``) and delete this worker's own victim.

    Parameters
    ----------
    index : int
        The worker's number (its values are ``1000 * (index + 1) + ...``).
    rounds : int
        How many rounds to run.
    folder : str
        The test's work folder: the gate, the exports to import, the reports.
    barrier : multiprocessing.Barrier
        Shared by all workers; every round starts with it.
    """
    import torch

    from napari_fcnseg.core.store import ModelError, ModelStore

    torch.set_num_threads(1)
    work = Path(folder)
    rng = random.Random(index)
    events: list[dict[str, Any]] = []
    wait_for_gate(work, f"w{index}")
    for r in range(rounds):
        base = 1000 * (index + 1) + 10 * r
        ops = {
            "race": lambda r=r, v=base + 1: ("saved", ModelStore().save(
                tiny_net(v), f"race-{r}", {"classes": CLASSES}).name, v),
            "own": lambda r=r, v=base + 2: ("saved", ModelStore().save(
                tiny_net(v), f"own-{index}-{r}", {"classes": CLASSES}).name, v),
            "import": lambda r=r, v=base + 3: ("imported", ModelStore().import_model(
                work / f"exp-{index}-{r}.pt").name, v),
            "export": lambda r=r: ("exported", str(ModelStore().export(
                f"keep-{r % 2}", work / "out" / "shared.pt")), None),
            "delete": lambda r=r: ("deleted", ModelStore().delete(f"victim-{index}-{r}")
                                   or f"victim-{index}-{r}", None),
        }
        order = list(ops)
        rng.shuffle(order)
        barrier.wait(timeout=60)
        for op in order:
            try:
                what, name, value = ops[op]()
                events.append({"op": op, "what": what, "name": name, "value": value})
            except (ModelError, OSError) as exc:
                taken = isinstance(exc, ModelError) and "already exists" in str(exc)
                events.append({"op": op, "what": "taken" if taken else "error",
                               "message": f"{type(exc).__name__}: {exc}"})
    (work / f"w{index}.json").write_text(json.dumps(events), encoding="utf-8")


def _cli(gate_dir: str, who: str, *args: str) -> None:
    """Import the slow modules, wait for the gate, then run ``napari_fcnseg.cli`` as -m does."""
    import runpy

    import napari_fcnseg.core.store  # noqa: F401 - torch and the store, before the gate

    wait_for_gate(Path(gate_dir), who)
    sys.argv = ["napari-fcnseg", *args]
    runpy.run_module("napari_fcnseg.cli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: python -m tests.reliability.store_worker GATE_DIR WHO ARGS...")
    _cli(*sys.argv[1:])
