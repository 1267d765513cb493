"""What every command shares: the plain-words error, progress bars, reading, model loading."""

from __future__ import annotations

import sys
from pathlib import Path

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A user-facing error: printed as one line, no traceback."""


def _drive(work, label: str, position: int = 0, on_record=None):
    """Run a progress generator to completion under a tqdm bar on stderr (loss in the postfix).

    ``on_record``, when given, also sees every progress record.
    """
    from tqdm import tqdm

    from ..core.progress import run_to_completion

    with tqdm(desc=label, total=None, unit="step", leave=position == 0, position=position,
              file=sys.stderr, dynamic_ncols=True, mininterval=0.5) as bar:
        def update(record) -> None:
            if bar.total != record.total:
                bar.total = record.total
            bar.n = record.step
            if record.loss is not None:
                bar.set_postfix(loss=f"{record.loss:.4f}", refresh=False)
            bar.refresh()
            if on_record is not None:
                on_record(record)

        return run_to_completion(work, update)


def _read(path: str | Path, streamed: bool = False):
    from ..io import read_volume

    return read_volume(Path(path), streamed=streamed)


def _load_model(name: str | None):
    from ..core.store import ModelStore

    if name is not None and not name.strip():
        raise CliError("--model is empty; give a model name (napari-fcnseg models list) or a file")
    store = ModelStore()
    return store.load(name or store.default())


def _parse_slices(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise CliError(f"--slices must be comma-separated slice numbers, not {text!r}") from None
