"""What a model may be called: safe file names, reserved names, and the built-in models.

A model's name is also the stem of its files in the store folder, so it must never point
outside that folder (``..``, separators), clash with a device name on Windows, or take a name the
store reserves for itself (the built-in models and ``default``).
"""

from __future__ import annotations

import re
import unicodedata

#: The read-only models shipped inside the package, in listing order; the first is the
#: default model. Their files are ``core/weights/<name>.pt`` and ``<name>.json``.
BUILT_IN = ("bundled", "fcn")
BUNDLED = BUILT_IN[0]
MAX_NAME_LENGTH = 64
_RESERVED = {*BUILT_IN, "default"}
_DEVICES = {"con", "prn", "aux", "nul"}  # Windows device names, also with any extension
VALID_NAME = re.compile(r"(?!.*\.\.)[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")


class ModelError(ValueError):
    """A model cannot be found, read, written or used; the message says why in plain words."""


class NameTakenError(ModelError):
    """The model name is already used (possibly by a save that won a race)."""


def clean_name(name: str) -> str:
    """Reduce ``name`` to letters, digits, ``.``, ``-`` and ``_`` (see :func:`sanitize_name`).

    Raises
    ------
    ModelError
        If nothing usable remains.
    """
    text = unicodedata.normalize("NFKD", str(name))
    text = "".join(c for c in text if not unicodedata.combining(c))  # drop accents
    text = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "_", text)).strip("._-")
    text = text[:MAX_NAME_LENGTH].rstrip("._-")
    if not text:
        raise ModelError(f"{name!r} is not a usable model name: use letters, digits, '-', '_', '.'")
    return text


def is_reserved(name: str) -> bool:
    """Whether ``name`` is a built-in model's, ``default``, or a Windows device name."""
    return name.casefold() in _RESERVED or name.split(".")[0].casefold() in _DEVICES


def sanitize_name(name: str) -> str:
    """Turn ``name`` into a safe model name.

    Accents are dropped, runs of other characters become ``_``, runs of dots collapse to one and
    leading/trailing ``.``, ``-``, ``_`` are removed: the result is 1 to 64 letters, digits,
    ``-``, ``_`` and ``.`` and can never point outside the store folder.

    Raises
    ------
    ModelError
        If nothing usable remains, or the result is reserved (a built-in model's name such as
        ``"bundled"``, or ``"default"``).
    """
    text = clean_name(name)
    if is_reserved(text):
        raise ModelError(f"{text!r} is a reserved name; please choose another model name")
    return text


def numbered(base: str, taken: set[str], exists) -> str:
    """``base``, or ``base-2``, ``base-3`` ... : the first free, unreserved name.

    Parameters
    ----------
    base : str
        An already cleaned name.
    taken : set of str
        Case-folded names in use.
    exists : callable
        ``exists(name)`` is True when files of that name are already on disk.
    """
    if is_reserved(base) and "." in base:  # e.g. "nul.x": a suffix would not help
        base = base.replace(".", "_", 1)
    candidate, i = base, 2
    while is_reserved(candidate) or candidate.casefold() in taken or exists(candidate):
        suffix = f"-{i}"
        candidate = base[: MAX_NAME_LENGTH - len(suffix)].rstrip("._-") + suffix
        i += 1
    return candidate
