"""Fixtures for the widget tests: a private model store with tiny random models."""

from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    """Every test in this folder needs napari's Qt viewer: ``-m gui`` selects them all."""
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.gui)


@pytest.fixture(autouse=True)
def model_dir(tmp_path, monkeypatch):
    """Point the model store at an empty folder for every test."""
    root = tmp_path / "models"
    monkeypatch.setenv("NAPARI_FCNSEG_MODEL_DIR", str(root))
    monkeypatch.setenv("NAPARI_FCNSEG_THREADS", "1")
    return root


def save_tiny_model(name, seed=0, classes=("background", "organ", "lesion")):
    """Save a small random network into the store; returns its name."""
    import torch

    from napari_fcnseg.core.nets import NetworkConfig, build_network
    from napari_fcnseg.core.store import ModelStore

    torch.manual_seed(seed)
    net = build_network(NetworkConfig(base=4, depth=2, num_classes=len(classes)))
    return ModelStore().save(net, name, {"classes": list(classes), "parent": "bundled"}).name


@pytest.fixture
def make_model(model_dir):
    """Factory saving a small random model into the test store: ``make_model(name, seed)``."""
    return save_tiny_model


@pytest.fixture
def tiny_model(model_dir):
    """A random 3-class model named "tiny", made the store's default."""
    from napari_fcnseg.core.store import ModelStore

    name = save_tiny_model("tiny")
    ModelStore().set_default(name)
    return name


@pytest.fixture
def notifications(monkeypatch):
    """Capture napari error/info notifications as (level, message) tuples."""
    captured = []
    monkeypatch.setattr("napari.utils.notifications.show_error",
                        lambda msg: captured.append(("error", str(msg))))
    monkeypatch.setattr("napari.utils.notifications.show_info",
                        lambda msg: captured.append(("info", str(msg))))
    return captured


@pytest.fixture(scope="session")
def ct_volume():
    """A small CT-like phantom (8 x 64 x 64) and its spacing."""
    from napari_fcnseg.core.phantoms import generate_volume

    ph = generate_volume("CT", (8, 64, 64), seed=3)
    return np.asarray(ph.image), tuple(ph.spacing)
