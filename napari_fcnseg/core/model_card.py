"""The model card: what the store knows about a model besides its weights, and how it is told.

A card is a JSON object saved beside the weights: ``name``, ``classes``, ``network`` (see
:class:`~napari_fcnseg.core.nets.NetworkConfig`), ``created``, ``version``, the lineage
(``parent``) and the scores of its fine-tuning round (``dice_before``, ``dice_after`` and what
it was measured on, ``dice_train``, ``improved``). :func:`describe_card` turns it into the plain
lines both the Models widget and ``napari-fcnseg models list`` show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .model_names import ModelError

if TYPE_CHECKING:  # the card needs no torch: the Models widget reads cards without it
    from .nets import SegmentationNet

#: Plain names of the architectures, for people.
ARCHITECTURE_NAMES = {"unet": "U-Net", "fcn": "plain FCN"}


@dataclass
class LoadedModel:
    """A network ready for inference, with its model card.

    Attributes
    ----------
    net : SegmentationNet
        Built from ``metadata["network"]``, weights loaded, in eval mode, on the CPU.
    metadata : dict
        The model card (``"name"``, ``"classes"``, ``"network"``, ``"created"``, ...).
    """

    net: SegmentationNet
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
        True for the read-only models shipped with the package (the built-in models).
    available : bool
        False when the weights file is missing, so loading will fail.
    """

    name: str
    metadata: dict[str, Any]
    bundled: bool
    available: bool = True

    @property
    def architecture(self) -> str:
        """The network's architecture name (``"unet"``, ``"fcn"``), or ``""`` if unknown."""
        network = self.metadata.get("network")
        return str(network.get("arch", "")) if isinstance(network, dict) else ""

    @property
    def scores(self) -> dict[str, float]:
        """The Dice to judge the model by.

        Held-out Dice after fine-tuning, or a built-in model's Dice on generated volumes.
        """
        scores = self.metadata.get("dice_after")
        if not scores:
            scores = (self.metadata.get("evaluation") or {}).get("pooled_dice")
        return scores if isinstance(scores, dict) else {}

    def summary(self) -> str:
        """One line: architecture, parent, annotated slices and the Dice to judge it by."""
        meta = self.metadata
        parts = [self.architecture or "?"]
        parts.append("built in" if self.bundled else f"from {meta.get('parent') or '-'}")
        if annotated_slice_count(meta):
            parts.append(f"{annotated_slice_count(meta)} slice(s)")
        if dice_text(self.scores):
            what = "held-out Dice" if meta.get("dice_after") else "Dice on generated volumes"
            parts.append(f"{what} {dice_text(self.scores)}")
        if meta.get("improved") is False:
            parts.append("NOT better than its parent")
        return ", ".join(parts)


def created_date(text: Any) -> str:
    """An ISO time stamp as a local date 'YYYY-MM-DD', or '' when absent."""
    try:
        return datetime.fromisoformat(str(text)).astimezone().strftime("%Y-%m-%d")
    except (TypeError, ValueError):
        return ""


def dice_text(scores: Any) -> str:
    """Per-class Dice as a short text: the mean, with every class in brackets."""
    if not isinstance(scores, dict) or not scores:
        return ""
    try:
        values = {str(k): float(v) for k, v in scores.items()}
    except (TypeError, ValueError):
        return ""
    mean = sum(values.values()) / len(values)
    return f"{mean:.2f} (" + ", ".join(f"{k} {v:.2f}" for k, v in values.items()) + ")"


def annotated_slice_count(meta: dict) -> str:
    """How many annotated slices a model was fine-tuned on, as text ('' if not fine-tuned)."""
    count = meta.get("num_annotated_slices")
    if count is None and isinstance(meta.get("slices"), list):
        count = len(meta["slices"])
    return "" if count is None else str(count)


def describe_card(meta: dict) -> str:
    """A few plain lines describing a model card (classes, lineage, scores and their basis)."""
    network: dict = meta["network"] if isinstance(meta.get("network"), dict) else {}
    lines = [f"Classes: {', '.join(meta.get('classes', [])) or 'unknown'}"]
    if network.get("arch"):
        lines.append(f"Architecture: {ARCHITECTURE_NAMES.get(network['arch'], network['arch'])}")
    if created_date(meta.get("created")):
        lines.append(f"Created: {created_date(meta.get('created'))}")
    if meta.get("parent"):
        lines.append(f"Fine-tuned from: {meta['parent']}")
    if annotated_slice_count(meta):
        lines.append(f"Trained on {annotated_slice_count(meta)} slice(s), "
                     f"{meta.get('steps', '?')} steps")
    for key, label in (("dice_before", "Starting model on the annotated slices"),
                       ("dice_after", "Fine-tuned, on annotated slices it did not train on"),
                       ("dice_train", "Fine-tuned, on its own training slices")):
        if dice_text(meta.get(key)):
            lines.append(f"{label}: {dice_text(meta.get(key))}")
    if meta.get("dice_after_measured_on"):
        lines.append(f"Held-out Dice: {meta['dice_after_measured_on']}")
    evaluation = (meta.get("evaluation") or {}).get("pooled_dice")
    if not meta.get("parent") and dice_text(evaluation):
        lines.append(f"Dice on held-out generated volumes: {dice_text(evaluation)}")
    if meta.get("improved") is False:
        lines.append("Not better than its parent on held-out slices: kept, but not selected.")
    imported = meta.get("imported")
    if isinstance(imported, dict):
        lines.append(f"Imported from {imported.get('file', '?')} "
                     f"(was '{imported.get('name', '?')}')")
    return "\n".join(lines)


def card_to_json(metadata: Any, what: str) -> dict[str, Any]:
    """Return ``metadata`` as plain JSON data (numpy and torch values converted).

    Raises
    ------
    ModelError
        If it is not a dict or holds something JSON cannot store.
    """
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


def card_bytes(data: dict[str, Any]) -> bytes:
    """The card as the UTF-8 JSON text saved on disk."""
    return json.dumps(data, indent=2).encode("utf-8")


def read_card(path: Path) -> dict[str, Any]:
    """Read a model card file.

    Raises
    ------
    ModelError
        If it cannot be read or is not a JSON object.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read model card {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ModelError(f"model card {path} is corrupt (not valid JSON): {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"model card {path} is corrupt: expected a JSON object")
    return data
