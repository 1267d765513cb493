"""The model store: the built-in models and the user's own, by name.

:class:`ModelStore` holds the read-only built-in models (``core/weights/<name>.pt`` plus the
model card ``<name>.json``: the U-Net ``bundled`` and the plain FCN ``fcn``) and the user's
models: ``<root>/<name>.pt`` (a plain ``state_dict``) and ``<root>/<name>.json`` (the model card,
whose presence marks a complete model). The default model is named in ``<root>/default.json``.
Writes are atomic (:mod:`~napari_fcnseg.core.atomic`); reads refuse files that carry pickled
objects (:mod:`~napari_fcnseg.core.model_files`). Naming rules live in
:mod:`~napari_fcnseg.core.model_names`, the card in :mod:`~napari_fcnseg.core.model_card`.
"""

from __future__ import annotations

import builtins
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import platformdirs
import torch

from napari_fcnseg import __version__
from napari_fcnseg.core.atomic import atomic_write_files
from napari_fcnseg.core.model_card import (
    LoadedModel,
    ModelInfo,
    card_bytes,
    card_to_json,
    read_card,
)
from napari_fcnseg.core.model_files import (
    FORMAT,
    FORMAT_VERSION,
    assemble,
    check_card,
    load_model_file,
    torch_load,
)
from napari_fcnseg.core.model_names import (
    BUILT_IN,
    BUNDLED,
    MAX_NAME_LENGTH,
    VALID_NAME,
    ModelError,
    NameTakenError,
    clean_name,
    is_reserved,
    numbered,
    sanitize_name,
)
from napari_fcnseg.core.name_claim import claim
from napari_fcnseg.core.nets import NetworkConfig, SegmentationNet
from napari_fcnseg.core.paths import OutputPathError, check_output_path

__all__ = [
    "BUILT_IN", "BUNDLED", "ENV_MODEL_DIR", "FORMAT", "FORMAT_VERSION", "MAX_NAME_LENGTH",
    "LoadedModel", "ModelError", "ModelInfo", "ModelStore", "NameTakenError", "sanitize_name",
]

ENV_MODEL_DIR = "NAPARI_FCNSEG_MODEL_DIR"
_DEFAULT_FILE = "default.json"

logger = logging.getLogger(__name__)


def _bytes_writer(data: bytes):
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return write


def _torch_writer(obj: Any):
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
    return write


class ModelStore:
    """The built-in models plus the user's saved models.

    Parameters
    ----------
    root : str or Path, optional
        Folder of user models, created on the first write. Default: ``$NAPARI_FCNSEG_MODEL_DIR``
        if set, else ``<user data dir>/napari-fcnseg/models``.
    bundled_dir : str or Path, optional
        Folder holding the built-in models' ``<name>.pt`` and ``<name>.json``; default
        ``core/weights``. ``bundled`` is always listed; another built-in model only when its
        card is there.
    """

    def __init__(self, root: str | Path | None = None, bundled_dir: str | Path | None = None):
        if root is None:
            env = os.environ.get(ENV_MODEL_DIR)
            root = env or Path(platformdirs.user_data_dir("napari-fcnseg")) / "models"
        self.root = Path(root).expanduser()
        self.bundled_dir = Path(bundled_dir) if bundled_dir else Path(__file__).parent / "weights"

    def _pt(self, name: str) -> Path:
        folder = self.bundled_dir if name in BUILT_IN else self.root
        return folder / f"{name}.pt"

    def _json(self, name: str) -> Path:
        folder = self.bundled_dir if name in BUILT_IN else self.root
        return folder / f"{name}.json"

    def _info(self, name: str, action: str = "") -> ModelInfo:
        if action and name in BUILT_IN:
            raise ModelError(f"the built-in model {name!r} cannot be {action}")
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

    def _built_in(self) -> list[ModelInfo]:
        infos = []
        for name in BUILT_IN:
            card = self._json(name)
            if name != BUNDLED and not card.is_file():
                continue
            try:
                meta = read_card(card) if card.is_file() else {}
            except ModelError as exc:
                logger.warning("%s", exc)
                meta = {}
            infos.append(ModelInfo(name, {**meta, "name": name}, True, self._pt(name).is_file()))
        return infos

    def list(self) -> list[ModelInfo]:
        """List the built-in models first, then user models by creation time.

        A user model whose card cannot be read is skipped with a logged warning.
        """
        infos = self._built_in()
        user: list[tuple[float, str, ModelInfo]] = []
        for path in self.root.glob("*.json") if self.root.is_dir() else []:
            name = path.stem
            if not VALID_NAME.fullmatch(name) or is_reserved(name):
                continue
            try:
                meta = {**read_card(path), "name": name}
            except ModelError as exc:
                logger.warning("skipping model %r: %s", name, exc)
                continue
            try:
                created = datetime.fromisoformat(meta["created"]).timestamp()
            except (KeyError, TypeError, ValueError):
                created = path.stat().st_mtime
            user.append((created, name, ModelInfo(name, meta, False, self._pt(name).is_file())))
        return infos + [info for *_, info in sorted(user, key=lambda item: item[:2])]

    def names(self) -> builtins.list[str]:  # `list` here is the method above
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
            return load_model_file(Path(name_or_path).expanduser())
        info = self._info(text)
        if not info.available:
            what = f"{text} weights" if info.bundled else f"weights of model {text!r}"
            raise ModelError(f"{what} not found at {self._pt(text)}")
        if info.bundled and not self._json(text).is_file():
            raise ModelError(f"{text} model card not found at {self._json(text)}")
        return assemble(torch_load(self._pt(text)), info.metadata, self._pt(text))

    def save(
        self, net: SegmentationNet, name: str, metadata: dict[str, Any], overwrite: bool = False
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
        meta = card_to_json(metadata, f"model {name!r}")
        created = datetime.now(UTC).isoformat()
        meta.update(name=name, created=created, version=__version__, network=config.to_dict())
        check_card(meta, f"model {name!r}")
        existing = self._taken(name)
        if existing is not None and (not overwrite or existing != name):
            raise NameTakenError(f"a model named {existing!r} already exists; choose another name")
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        self.root.mkdir(parents=True, exist_ok=True)
        if overwrite:
            atomic_write_files([(self._pt(name), _torch_writer(state)),
                                (self._json(name), _bytes_writer(card_bytes(meta)))])
            return ModelInfo(name, meta, False)
        self._claim(name, card_bytes(meta))  # atomic across processes: one save wins a name
        try:
            atomic_write_files([(self._pt(name), _torch_writer(state))])
        except BaseException:
            self._json(name).unlink(missing_ok=True)
            raise
        return ModelInfo(name, meta, False)

    def _claim(self, name: str, card: bytes) -> None:
        """Create the card of ``name`` unless a model of that name (in any case) exists.

        Atomic across processes; see :func:`~napari_fcnseg.core.name_claim.claim`.

        Raises
        ------
        NameTakenError
            When another save took the name first.
        """
        claim(self.root, name, self._json(name), card)

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
        atomic_write_files([(self._pt(new), _bytes_writer(weights)),
                            (self._json(new), _bytes_writer(card_bytes(meta)))])
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
        atomic_write_files([(dest, _torch_writer(payload))])
        return dest

    def import_model(self, path: str | Path, name: str | None = None) -> ModelInfo:
        """Import an exported model file, under ``name`` or a free name derived from the file.

        The original name, creation time and version are kept in ``metadata["imported"]``.
        """
        path = Path(path).expanduser()
        loaded = load_model_file(path)
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
            name = read_card(path).get("default") if path.is_file() else None
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
        data = card_bytes({"default": name})
        atomic_write_files([(self.root / _DEFAULT_FILE, _bytes_writer(data))])

    def reset(self) -> None:
        """Make the bundled model the default again."""
        (self.root / _DEFAULT_FILE).unlink(missing_ok=True)

    def unique_name(self, stem: str) -> str:
        """Return ``stem`` cleaned up, with ``-2``, ``-3`` ... appended if taken or reserved."""
        taken = {n.casefold() for n in self.names()}
        return numbered(clean_name(stem), taken, lambda name: self._json(name).exists())
