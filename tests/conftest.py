import pytest
import torch

from napari_fcnseg.core.nets import NetworkConfig, build_network
from napari_fcnseg.core.phantoms import CLASS_NAMES
from napari_fcnseg.core.store import ModelStore


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A private model store holding a tiny random model named "tiny"."""
    monkeypatch.setenv("NAPARI_FCNSEG_MODEL_DIR", str(tmp_path / "models"))
    torch.manual_seed(0)
    s = ModelStore()
    s.save(build_network(NetworkConfig(base=4, depth=2)), "tiny", {"classes": list(CLASS_NAMES)})
    return s
