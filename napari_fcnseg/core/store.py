"""Saving, loading and sharing segmentation models.

:class:`ModelStore` holds the read-only bundled model (``core/weights/bundled.pt`` plus its model
card ``bundled.json``) and the user's models: ``<root>/<name>.pt`` (a plain ``state_dict``) and
``<root>/<name>.json`` (the model card, whose presence marks a complete model). The default
model is named in ``<root>/default.json``. Writes are atomic (temporary file, fsync, rename);
reads use ``torch.load(..., weights_only=True)`` and refuse files that carry pickled objects.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import re
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import platformdirs
import torch
from torch import nn

from napari_fcnseg import __version__
from napari_fcnseg.core.nets import NetworkConfig, build_network
from napari_fcnseg.core.paths import OutputPathError, check_output_path

BUNDLED = "bundled"
FORMAT = "napari-fcnseg-model"
FORMAT_VERSION = 1
ENV_MODEL_DIR = "NAPARI_FCNSEG_MODEL_DIR"
MAX_NAME_LENGTH = 64
_DEFAULT_FILE = "default.json"
_RESERVED = {BUNDLED, "default"}
_DEVICES = {"con", "prn", "aux", "nul"}  # Windows device names, also with any extension
_VALID = re.compile(r"(?!.*\.\.)[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")
_REFUSED = re.compile(r"unsupported (global|class)|allowed global", re.IGNORECASE)

logger = logging.getLogger(__name__)


class ModelError(ValueError):
    """A model cannot be found, read, written or used; the message says why in plain words."""


class NameTakenError(ModelError):
    """The model name is already used (possibly by a save that won a race)."""


@dataclass
class LoadedModel:
    """A network ready for inference, with its model card.

    Attributes
    ----------
    net : torch.nn.Module
        Built from ``metadata["network"]``, weights loaded, in eval mode, on the CPU.
    metadata : dict
        The model card (``"name"``, ``"classes"``, ``"network"``, ``"created"``, ...).
    """

    net: nn.Module
    metadata: dict[str, Any]

    @property
    def name(self) -> str:
        """The model's name."""
        return str(self.metadata.get("name", ""))

    @property
    def class_names(self) -> list[str]:
        """Class names; index ``i`` names label value ``i`` (0 is background)."""
        return list(self.metadata.get("classes", []))


@dataclass
class ModelInfo:
    """A model listed by the store, without its weights.

    Attributes
    ----------
    name : str
        Store name.
    metadata : dict
        The model card.
    bundled : bool
        True for the read-only bundled model.
    available : bool
        False when the weights file is missing, so loading will fail.
    """

    name: str
    metadata: dict[str, Any]
    bundled: bool
    available: bool = True


def _clean(name: str) -> str:
    text = unicodedata.normalize("NFKD", str(name))
    text = "".join(c for c in text if not unicodedata.combining(c))  # drop accents
    text = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "_", text)).strip("._-")
    text = text[:MAX_NAME_LENGTH].rstrip("._-")
    if not text:
        raise ModelError(f"{name!r} is not a usable model name: use letters, digits, '-', '_', '.'")
    return text


def _is_reserved(name: str) -> bool:
    return name.casefold() in _RESERVED or name.split(".")[0].casefold() in _DEVICES


def sanitize_name(name: str) -> str:
    """Turn ``name`` into a safe model name.

    Accents are dropped, runs of other characters become ``_``, runs of dots collapse to one and
    leading/trailing ``.``, ``-``, ``_`` are removed: the result is 1 to 64 letters, digits,
    ``-``, ``_`` and ``.`` and can never point outside the store folder.

    Raises
    ------
    ModelError
        If nothing usable remains, or the result is reserved (``"bundled"``, ``"default"``).
    """
    text = _clean(name)
    if _is_reserved(text):
        raise ModelError(f"{text!r} is a reserved name; please choose another model name")
    return text


def _to_json(metadata: Any, what: str) -> dict[str, Any]:
    if not isinstance(metadata, dict):
        raise ModelError(f"metadata for {what} must be a dict, not {type(metadata).__name__}")

    def default(obj: Any) -> Any:  # numpy arrays and scalars, tensors
        if hasattr(obj, "tolist"):
            return obj.tolist()
        raise TypeError(f"{type(obj).__name__} is not JSON-compatible")

    try:
        return json.loads(json.dumps(metadata, default=default))
    except (TypeError, ValueError) as exc:
        raise ModelError(f"metadata for {what} cannot be stored as JSON: {exc}") from exc


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, indent=2).encode("utf-8")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read model card {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ModelError(f"model card {path} is corrupt (not valid JSON): {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"model card {path} is corrupt: expected a JSON object")
    return data


def _write_files(files: list[tuple[Path, Callable[[IO[bytes]], Any]]]) -> None:
    """Stage every file to a temporary file beside it, fsync, then move them all into place."""
    staged: list[str] = []
    try:
        for path, writer in files:
            with tempfile.NamedTemporaryFile(
                delete=False, dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp"
            ) as tmp:
                staged.append(tmp.name)
                writer(tmp)
                tmp.flush()
                os.fsync(tmp.fileno())
        for tmp_name, (path, _) in zip(staged, files, strict=True):
            os.replace(tmp_name, path)
    except BaseException:
        for tmp_name in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
        raise


def _torch_load(path: Path) -> Any:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if _REFUSED.search(str(exc)):
            raise ModelError(
                f"{path} was refused for safety: it contains code or objects that are not "
                "network weights. Only load model files from sources you trust."
            ) from exc
        raise ModelError(f"{path} is corrupt or not a PyTorch weights file") from exc
    except Exception as exc:  # torch raises many exception types for damaged files
        raise ModelError(
            f"{path} is empty, truncated, corrupt or not a PyTorch weights file "
            f"({type(exc).__name__})"
        ) from exc


def _check_card(metadata: dict[str, Any], source: object) -> NetworkConfig:
    network, classes = metadata.get("network"), metadata.get("classes")
    if not isinstance(network, dict):
        raise ModelError(f"the model card of {source} has no 'network' description")
    try:
        config = NetworkConfig.from_dict(network)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"the model card of {source} has invalid network settings: {exc}") from exc
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ModelError(f"the model card of {source} needs 'classes', a list of class names")
    if len(classes) != config.num_classes:
        raise ModelError(
            f"the model card of {source} names {len(classes)} classes but the network has "
            f"{config.num_classes} outputs"
        )
    return config


def _assemble(state_dict: Any, metadata: dict[str, Any], source: object) -> LoadedModel:
    config = _check_card(metadata, source)
    if not isinstance(state_dict, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
    ):
        raise ModelError(f"{source} does not contain network weights")
    with torch.device("meta"):  # no random initialisation: the weights replace it anyway
        net = build_network(config)
    try:
        net.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as exc:
        raise ModelError(
            f"the weights in {source} do not fit the network described in its model card "
            f"(architecture mismatch): {' '.join(str(exc).split())[:400]}"
        ) from exc
    return LoadedModel(net.eval(), metadata)


class ModelStore:
    """The bundled model plus the user's saved models.

    Parameters
    ----------
    root : str or Path, optional
        Folder of user models, created on the first write. Default: ``$NAPARI_FCNSEG_MODEL_DIR``
        if set, else ``<user data dir>/napari-fcnseg/models``.
    bundled_dir : str or Path, optional
        Folder holding ``bundled.pt`` and ``bundled.json``; default ``core/weights``.
    """

    def __init__(self, root: str | Path | None = None, bundled_dir: str | Path | None = None):
        if root is None:
            env = os.environ.get(ENV_MODEL_DIR)
            root = env or Path(platformdirs.user_data_dir("napari-fcnseg")) / "models"
        self.root = Path(root).expanduser()
        self.bundled_dir = Path(bundled_dir) if bundled_dir else Path(__file__).parent / "weights"

    def _pt(self, name: str) -> Path:
        return self.bundled_dir / "bundled.pt" if name == BUNDLED else self.root / f"{name}.pt"

    def _json(self, name: str) -> Path:
        return self.bundled_dir / "bundled.json" if name == BUNDLED else self.root / f"{name}.json"

    def _info(self, name: str, action: str = "") -> ModelInfo:
        if action and name == BUNDLED:
            raise ModelError(f"the bundled model cannot be {action}")
        for info in self.list():
            if info.name == name:
                return info
        raise ModelError(f"there is no model named {name!r}; available: {', '.join(self.names())}")

    def _taken(self, name: str, ignore: str | None = None) -> str | None:
        """Return the existing model that ``name`` would clash with (case-insensitively)."""
        for existing in self.names():
            if existing.casefold() == name.casefold() and existing != ignore:
                return existing
        return name if name != ignore and self._json(name).exists() else None

    def list(self) -> list[ModelInfo]:
        """List the bundled model first, then user models by creation time.

        A user model whose card cannot be read is skipped with a logged warning.
        """
        try:
            card = self._json(BUNDLED)
            bundled = _read_json(card) if card.is_file() else {}
        except ModelError as exc:
            logger.warning("%s", exc)
            bundled = {}
        available = self._pt(BUNDLED).is_file()
        infos = [ModelInfo(BUNDLED, {**bundled, "name": BUNDLED}, True, available)]
        user: list[tuple[float, str, ModelInfo]] = []
        for path in self.root.glob("*.json") if self.root.is_dir() else []:
            name = path.stem
            if not _VALID.fullmatch(name) or _is_reserved(name):
                continue
            try:
                meta = {**_read_json(path), "name": name}
            except ModelError as exc:
                logger.warning("skipping model %r: %s", name, exc)
                continue
            try:
                created = datetime.fromisoformat(meta["created"]).timestamp()
            except (KeyError, TypeError, ValueError):
                created = path.stat().st_mtime
            user.append((created, name, ModelInfo(name, meta, False, self._pt(name).is_file())))
        return infos + [info for *_, info in sorted(user, key=lambda item: item[:2])]

    def names(self) -> list[str]:
        """Names of all models, in :meth:`list` order."""
        return [info.name for info in self.list()]

    def load(self, name_or_path: str | Path) -> LoadedModel:
        """Load a model by store name, or from a file (an export, or a ``.pt`` beside its card).

        Raises
        ------
        ModelError
            If the model is unknown, missing, corrupt, unsafe or does not fit its model card.
        """
        text = str(name_or_path)
        looks_like_path = "/" in text or os.sep in text or text.endswith((".pt", ".pth"))
        if isinstance(name_or_path, Path) or (looks_like_path and text not in self.names()):
            return self._load_file(Path(name_or_path).expanduser())
        info = self._info(text)
        if not info.available:
            what = "bundled weights" if info.bundled else f"weights of model {text!r}"
            raise ModelError(f"{what} not found at {self._pt(text)}")
        if info.bundled and not self._json(BUNDLED).is_file():
            raise ModelError(f"bundled model card not found at {self._json(BUNDLED)}")
        return _assemble(_torch_load(self._pt(text)), info.metadata, self._pt(text))

    def _load_file(self, path: Path) -> LoadedModel:
        obj = _torch_load(path)
        if isinstance(obj, dict) and obj.get("format") == FORMAT:
            version, meta = obj.get("format_version"), obj.get("metadata")
            if not isinstance(version, int) or version > FORMAT_VERSION:
                raise ModelError(f"{path} needs a newer napari-fcnseg (format {version!r})")
            if not isinstance(meta, dict):
                raise ModelError(f"{path} has no model card")
            return _assemble(obj.get("state_dict"), {"name": path.stem, **meta}, path)
        card = path.with_suffix(".json")
        if isinstance(obj, dict) and path.suffix == ".pt" and card.is_file():
            return _assemble(obj, {**_read_json(card), "name": path.stem}, path)
        raise ModelError(
            f"{path} is not a napari-fcnseg model file (export one from napari-fcnseg to share it)"
        )

    def save(
        self, net: nn.Module, name: str, metadata: dict[str, Any], overwrite: bool = False
    ) -> ModelInfo:
        """Save ``net`` as ``sanitize_name(name)`` with its model card.

        ``"name"``, ``"created"``, ``"version"`` and ``"network"`` are filled in; other keys
        (``"classes"``, required, ``"parent"``, ``"dice_after"``, ...) are kept.

        Raises
        ------
        ModelError
            If the name is reserved or taken (unless ``overwrite``), or the metadata is invalid.
            ``OSError`` propagates when the disk cannot be written.
        """
        name = sanitize_name(name)
        config = getattr(net, "config", None)
        if not isinstance(config, NetworkConfig):
            raise ModelError("the network has no 'config'; build it with nets.build_network")
        meta = _to_json(metadata, f"model {name!r}")
        created = datetime.now(UTC).isoformat()
        meta.update(name=name, created=created, version=__version__, network=config.to_dict())
        _check_card(meta, f"model {name!r}")
        existing = self._taken(name)
        if existing is not None and (not overwrite or existing != name):
            raise NameTakenError(f"a model named {existing!r} already exists; choose another name")
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        self.root.mkdir(parents=True, exist_ok=True)
        if overwrite:
            _write_files([
                (self._pt(name), lambda f: torch.save(state, f)),
                (self._json(name), lambda f: f.write(_dumps(meta))),
            ])
            return ModelInfo(name, meta, False)
        self._claim(name, _dumps(meta))  # atomic across processes: one save wins a name
        try:
            _write_files([(self._pt(name), lambda f: torch.save(state, f))])
        except BaseException:
            self._json(name).unlink(missing_ok=True)
            raise
        return ModelInfo(name, meta, False)

    def _claim(self, name: str, card: bytes) -> None:
        """Create the model card of ``name`` only if no card exists, atomically.

        The complete card is written to a temporary file and hard-linked into place (``link``
        fails if the target exists); where the file system has no hard links, an exclusive
        create does the same.

        Raises
        ------
        NameTakenError
            When another save created the card first.
        """
        path = self._json(name)
        with tempfile.NamedTemporaryFile(delete=False, dir=self.root, prefix=f".{name}-",
                                         suffix=".tmp") as tmp:
            tmp.write(card)
            tmp.flush()
            os.fsync(tmp.fileno())
        try:
            os.link(tmp.name, path)
        except FileExistsError:
            raise NameTakenError(f"a model named {name!r} already exists; choose another "
                                 "name") from None
        except OSError:  # no hard links here
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                raise NameTakenError(f"a model named {name!r} already exists; choose another "
                                     "name") from None
            with os.fdopen(fd, "wb") as fh:
                fh.write(card)
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp.name)

    def delete(self, name: str) -> None:
        """Delete a user model; if it was the default, the default goes back to bundled."""
        self._info(name, "deleted")
        was_default = self._read_default() == name
        self._json(name).unlink(missing_ok=True)
        self._pt(name).unlink(missing_ok=True)
        if was_default:
            self.reset()

    def rename(self, old: str, new: str) -> ModelInfo:
        """Rename a user model to ``sanitize_name(new)``; it stays the default if it was."""
        info = self._info(old, "renamed")
        new = sanitize_name(new)
        if new == old:
            return info
        if new.casefold() == old.casefold():  # same file on case-insensitive file systems
            return self.rename(self.rename(old, self.unique_name(f"{old}-renaming")).name, new)
        existing = self._taken(new, ignore=old)
        if existing is not None:
            raise ModelError(f"a model named {existing!r} already exists; choose another name")
        if not info.available:
            raise ModelError(f"weights of model {old!r} not found at {self._pt(old)}")
        was_default = self._read_default() == old
        meta, weights = {**info.metadata, "name": new}, self._pt(old).read_bytes()
        _write_files([
            (self._pt(new), lambda f: f.write(weights)),
            (self._json(new), lambda f: f.write(_dumps(meta))),
        ])
        self._json(old).unlink(missing_ok=True)
        self._pt(old).unlink(missing_ok=True)
        if was_default:
            self.set_default(new)
        return ModelInfo(new, meta, False)

    def export(self, name: str, dest: str | Path) -> Path:
        """Write model ``name`` to one self-contained file and return its path.

        ``dest`` is a file path, or a folder to write ``<name>.pt`` into. The file holds
        ``{"format", "format_version", "metadata", "state_dict"}`` and loads with
        ``torch.load(..., weights_only=True)``.
        """
        loaded = self.load(name)
        dest = Path(dest).expanduser()
        dest = dest / f"{name}.pt" if dest.is_dir() else dest
        if dest.resolve().parent == self.root.resolve():
            raise ModelError(f"cannot export into the model folder {self.root}; choose another")
        try:
            check_output_path(dest)
        except OutputPathError as exc:
            raise ModelError(str(exc)) from None
        payload = {"format": FORMAT, "format_version": FORMAT_VERSION,
                   "metadata": loaded.metadata, "state_dict": loaded.net.state_dict()}
        _write_files([(dest, lambda f: torch.save(payload, f))])
        return dest

    def import_model(self, path: str | Path, name: str | None = None) -> ModelInfo:
        """Import an exported model file, under ``name`` or a free name derived from the file.

        The original name, creation time and version are kept in ``metadata["imported"]``.
        """
        path = Path(path).expanduser()
        loaded = self._load_file(path)
        meta = dict(loaded.metadata)
        origin = {k: meta[k] for k in ("name", "created", "version") if k in meta}
        meta["imported"] = {"file": path.name, **origin}
        if name is not None:
            return self.save(loaded.net, name, meta)
        for _ in range(1000):  # another process may take the free name first: take the next
            try:
                return self.save(loaded.net, self.unique_name(loaded.name or path.stem), meta)
            except NameTakenError:
                continue
        raise ModelError("could not find a free model name; name the import explicitly")

    def _read_default(self) -> str | None:
        path = self.root / _DEFAULT_FILE
        try:
            name = _read_json(path).get("default") if path.is_file() else None
        except ModelError:
            return None
        return name if isinstance(name, str) else None

    def default(self) -> str:
        """Name of the default model: ``"bundled"`` unless another existing model was chosen."""
        name = self._read_default()
        return name if name is not None and name in self.names() else BUNDLED

    def set_default(self, name: str) -> None:
        """Make the existing model ``name`` the default."""
        self._info(name)
        if name == BUNDLED:
            return self.reset()
        self.root.mkdir(parents=True, exist_ok=True)
        data = _dumps({"default": name})
        _write_files([(self.root / _DEFAULT_FILE, lambda f: f.write(data))])

    def reset(self) -> None:
        """Make the bundled model the default again."""
        (self.root / _DEFAULT_FILE).unlink(missing_ok=True)

    def unique_name(self, stem: str) -> str:
        """Return ``stem`` cleaned up, with ``-2``, ``-3`` ... appended if taken or reserved."""
        base = _clean(stem)
        if _is_reserved(base) and "." in base:  # e.g. "nul.x": a suffix would not help
            base = base.replace(".", "_", 1)
        taken = {n.casefold() for n in self.names()}
        candidate, i = base, 2
        while (
            _is_reserved(candidate)
            or candidate.casefold() in taken
            or self._json(candidate).exists()
        ):
            suffix = f"-{i}"
            candidate = base[: MAX_NAME_LENGTH - len(suffix)].rstrip("._-") + suffix
            i += 1
        return candidate
