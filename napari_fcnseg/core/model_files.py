"""Reading model weights safely, and the self-contained export file.

Weights are read with ``torch.load(..., weights_only=True)``: a file carrying pickled code or
objects is refused in plain words, never run. An export file holds
``{"format", "format_version", "metadata", "state_dict"}`` so it can be shared alone.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from .model_card import LoadedModel, read_card
from .model_names import ModelError
from .nets import NetworkConfig, build_network

FORMAT = "napari-fcnseg-model"
FORMAT_VERSION = 1
_REFUSED = re.compile(r"unsupported (global|class)|allowed global", re.IGNORECASE)


def torch_load(path: Path) -> Any:
    """Load a weights or export file without running any code it may carry.

    Raises
    ------
    ModelError
        If the file cannot be read, is damaged, or holds anything but tensors and plain data.
    """
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


def check_card(metadata: dict[str, Any], source: object) -> NetworkConfig:
    """Validate a card's network and classes; return the network configuration.

    Raises
    ------
    ModelError
        If the network description is missing or invalid, or the classes do not match it.
    """
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


def assemble(state_dict: Any, metadata: dict[str, Any], source: object) -> LoadedModel:
    """Build the network its card describes and load ``state_dict`` into it (eval mode).

    Raises
    ------
    ModelError
        If the card is invalid or the weights do not fit the network it describes.
    """
    config = check_card(metadata, source)
    if not isinstance(state_dict, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
    ):
        raise ModelError(f"{source} does not contain network weights")
    with torch.device("meta"):  # no random initialisation: the weights replace it anyway
        net = build_network(config)
    state_dict = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    try:
        net.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as exc:
        raise ModelError(
            f"the weights in {source} do not fit the network described in its model card "
            f"(architecture mismatch): {' '.join(str(exc).split())[:400]}"
        ) from exc
    return LoadedModel(net.eval(), metadata)


def load_model_file(path: Path) -> LoadedModel:
    """Load an export file, or a ``<name>.pt`` lying beside its ``<name>.json`` card.

    Raises
    ------
    ModelError
        If the file is not a napari-fcnseg model, is unsafe, damaged or needs a newer version.
    """
    obj = torch_load(path)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        version, meta = obj.get("format_version"), obj.get("metadata")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelError(f"{path} needs a newer napari-fcnseg (format {version!r})")
        if not isinstance(meta, dict):
            raise ModelError(f"{path} has no model card")
        return assemble(obj.get("state_dict"), {"name": path.stem, **meta}, path)
    card = path.with_suffix(".json")
    if isinstance(obj, dict) and path.suffix == ".pt" and card.is_file():
        return assemble(obj, {**read_card(card), "name": path.stem}, path)
    raise ModelError(
        f"{path} is not a napari-fcnseg model file (export one from napari-fcnseg to share it)"
    )
