"""Several processes save, import, export and delete in one model store at the same time.

Three ``multiprocessing`` workers call :class:`~napari_fcnseg.core.store.ModelStore` directly
for several rounds (each round starts at a shared barrier) while three command-line processes
(``python -m napari_fcnseg.cli models import|delete|export ...``) run beside them; all of them
start at one gate, after the slow imports (see :mod:`.store_worker`). The workers are forked
from a fork server that imported torch once (a fresh interpreter per worker would import it
again, seconds each on a laptop). Afterwards the store must hold exactly the models reported,
each with the weights of the process that reported it.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest

from napari_fcnseg.core.store import ModelStore

from .store_worker import CLASSES, GATE, stamp_of, store_worker, tiny_net

REPO = Path(__file__).resolve().parents[2]
WORKERS, ROUNDS = 3, 4
#: Models nobody may lose (two look like victims' names), with the value of their weights.
KEPT = {"keep-0": 11.0, "keep-1": 12.0, "victim-9-0": 13.0, "victim-cli-2": 14.0}
CLI_IMPORTS = {"cli-import": 50_000.0}


def _exports_of_t(src: ModelStore, dests: dict[Path, float]) -> None:
    """Write exports of a model named ``t``, one per file, with all weights ``dests[file]``."""
    import torch

    src.save(tiny_net(0.0), "t", {"classes": CLASSES})
    payload = torch.load(src.export("t", src.root.parent / "t.pt"), weights_only=True)
    for dest, value in dests.items():  # the same export, stamped with each process's value
        net = tiny_net(value)
        payload["state_dict"] = net.state_dict()
        torch.save(payload, dest)


def _cli(work: Path, who: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.store_worker", str(work), who, *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_ready(work: Path, count: int, procs: list, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while len(list(work.glob("ready-*"))) < count:
        dead = [p for p in procs if getattr(p, "exitcode", None) is not None
                or getattr(p, "returncode", None) is not None]
        assert not dead and time.monotonic() < end, "a process died before the gate"
        time.sleep(0.02)


@pytest.fixture
def work(tmp_path, monkeypatch):
    """The store (with models nobody may lose) and the export files each process imports."""
    monkeypatch.setenv("NAPARI_FCNSEG_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    store = ModelStore()
    for name, value in KEPT.items():
        store.save(tiny_net(value), name, {"classes": CLASSES})
    victims = [f"victim-{w}-{r}" for w in range(WORKERS) for r in range(ROUNDS)]
    for name in [*victims, "victim-cli"]:
        store.save(tiny_net(-1.0), name, {"classes": CLASSES})
    dests = {work / f"exp-{w}-{r}.pt": 1000 * (w + 1) + 10 * r + 3
             for w in range(WORKERS) for r in range(ROUNDS)}
    _exports_of_t(ModelStore(tmp_path / "src"),
                  {**dests, **{work / f"{who}.pt": v for who, v in CLI_IMPORTS.items()}})
    return work


def _run_everything(work: Path):
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["napari_fcnseg.core.store", "tests.reliability.store_worker"])
    barrier = ctx.Barrier(WORKERS)
    workers = [ctx.Process(target=store_worker, args=(w, ROUNDS, str(work), barrier))
               for w in range(WORKERS)]
    for proc in workers:
        proc.start()
    clis = {who: _cli(work, who, "models", "import", str(work / f"{who}.pt"))
            for who in CLI_IMPORTS}
    clis["cli-delete"] = _cli(work, "cli-delete", "models", "delete", "victim-cli")
    clis["cli-export"] = _cli(work, "cli-export", "models", "export", "keep-0",
                              str(work / "out" / "shared.pt"))
    try:
        _wait_ready(work, WORKERS + len(clis), [*workers, *clis.values()])
        (work / GATE).touch()
        outputs = {who: proc.communicate(timeout=120) + (proc.returncode,)
                   for who, proc in clis.items()}
        for proc in workers:
            proc.join(timeout=120)
    finally:
        for proc in [*workers, *clis.values()]:
            proc.kill()
    assert [proc.exitcode for proc in workers] == [0] * WORKERS
    events = [json.loads((work / f"w{w}.json").read_text()) for w in range(WORKERS)]
    return events, outputs


def test_concurrent_save_import_export_delete_lose_nothing(work):
    events, outputs = _run_everything(work)
    for who, (_, err, code) in outputs.items():
        assert code == 0 and "error" not in err, f"{who}: {err}"
    reported: list[tuple[str, float]] = []  # (name, the value that process wrote)
    for who, value in CLI_IMPORTS.items():
        line = outputs[who][0].strip()
        assert line.startswith("imported "), line
        reported.append((line.removeprefix("imported "), value))
    assert outputs["cli-delete"][0].strip() == "deleted victim-cli"
    assert outputs["cli-export"][0].startswith("exported keep-0 to ")
    races: dict[str, list] = {}
    for worker_events in events:
        assert len(worker_events) == ROUNDS * 5
        for e in worker_events:
            assert e["what"] != "error", e
            if e["op"] == "race":
                races.setdefault(e.get("name") or "lost", []).append(e)
            if e["what"] in ("saved", "imported"):
                reported.append((e["name"], e["value"]))
            if e["op"] == "delete":
                assert e["what"] == "deleted", e
    # every round's race for one name: one save won, every other one was told the name is taken
    for r in range(ROUNDS):
        assert len(races[f"race-{r}"]) == 1, races
    assert len(races["lost"]) == ROUNDS * (WORKERS - 1)
    assert all(e["what"] == "taken" for e in races["lost"])
    # no two reports share a name, and every import came through
    names = [name.casefold() for name, _ in reported]
    assert len(names) == len(set(names)), sorted(names)
    assert sum(name.startswith("t") for name in names) == WORKERS * ROUNDS + len(CLI_IMPORTS)

    store = ModelStore()
    infos = {info.name: info for info in store.list() if not info.bundled}
    expected = {**KEPT, **dict(reported)}
    # exactly the models reported plus the ones nobody touched: deletions removed only victims
    assert set(infos) == set(expected)
    for name, value in expected.items():
        assert infos[name].available, name
        assert stamp_of(store.load(name).net) == value, f"{name} holds another's weights"
    # no temporary or half-written file anywhere: two files per model, one export
    files = {p.name for p in store.root.iterdir()}
    assert files == {f"{n}{ext}" for n in expected for ext in (".pt", ".json")}
    assert [p.name for p in (work / "out").iterdir()] == ["shared.pt"]
    assert stamp_of(store.load(work / "out" / "shared.pt").net) in (KEPT["keep-0"],
                                                                   KEPT["keep-1"])


def test_names_that_differ_only_in_case_cannot_both_be_claimed(tmp_path):
    # Two saves race, one for "LIVER", one for "liver": the second process listed the store
    # just before the first one's save landed. The store keeps names unique regardless of
    # case (they are the same file on macOS and Windows), so the later save must be refused.
    root = tmp_path / "models"
    root.mkdir()
    late, early = ModelStore(root), ModelStore(root)
    stale = late.list()  # what the later save saw when it looked
    early.save(tiny_net(1.0), "LIVER", {"classes": CLASSES})
    late.list = lambda: stale  # its look at the store came before that save landed
    try:
        late.save(tiny_net(2.0), "liver", {"classes": CLASSES})
    except Exception as exc:  # noqa: BLE001 - which error it is, is checked below
        refused = exc
    else:
        refused = None
    names = [n for n in ModelStore(root).names() if n.casefold() == "liver"]
    assert names == ["LIVER"], f"two models named alike: {names}"
    assert refused is not None and "already exists" in str(refused)
    assert stamp_of(ModelStore(root).load("LIVER").net) == 1.0
