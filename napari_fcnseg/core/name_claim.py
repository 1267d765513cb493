"""Claiming a model name atomically across processes: one save wins a name, the others hear so.

Names are unique regardless of case, but ``LIVER.json`` and ``liver.json`` are different files
on a case-sensitive file system. :func:`claim` therefore holds a lock named by the case-folded
name, checks the folder itself (not an earlier listing) for a card of that name in any case,
and creates the card by hard-linking a complete temporary file into place (``link`` fails if
the target exists; where the file system has no hard links, an exclusive create does the same).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .model_names import NameTakenError

#: Age after which a name lock is taken to be left behind by a process that died.
STALE_LOCK_SECONDS = 30
#: How long a save waits for another save of the same name to finish.
LOCK_WAIT_SECONDS = 10


def _taken(name: str) -> NameTakenError:
    return NameTakenError(f"a model named {name!r} already exists; choose another name")


@contextlib.contextmanager
def name_lock(root: Path, name: str) -> Iterator[None]:
    """Hold ``<root>/.claim-<case-folded name>.lock`` (exclusive create) for a claim.

    Raises
    ------
    NameTakenError
        When another save of the name holds the lock for longer than
        :data:`LOCK_WAIT_SECONDS`.
    """
    lock = root / f".claim-{name.casefold()}.lock"
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            break
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - lock.stat().st_mtime > STALE_LOCK_SECONDS:
                    lock.unlink()
                    continue
            if time.monotonic() > deadline:
                raise NameTakenError(f"another save of {name!r} is in progress; try again or "
                                     "choose another name") from None
            time.sleep(0.01)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()


def _link_card(path: Path, card: bytes) -> None:
    with tempfile.NamedTemporaryFile(delete=False, dir=path.parent, prefix=f".{path.stem}-",
                                     suffix=".tmp") as tmp:
        tmp.write(card)
        tmp.flush()
        os.fsync(tmp.fileno())
    try:
        os.link(tmp.name, path)
    except FileExistsError:
        raise _taken(path.stem) from None
    except OSError:  # no hard links here
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            raise _taken(path.stem) from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(card)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)


def claim(root: Path, name: str, card_path: Path, card: bytes) -> None:
    """Create ``card_path`` holding ``card`` only if no card of ``name`` (in any case) exists.

    Raises
    ------
    NameTakenError
        When a model of that name exists or another save created it first.
    """
    with name_lock(root, name):
        clash = next((p.stem for p in root.glob("*.json")
                      if p.stem.casefold() == name.casefold()), None)
        if clash is not None:
            raise _taken(clash)
        _link_card(card_path, card)
