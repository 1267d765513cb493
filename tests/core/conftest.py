import pytest
import torch

from napari_fcnseg.core.nets import NetworkConfig, build_network


@pytest.fixture
def tiny_net():
    """A small, randomly initialised U-Net: fast, and good enough to exercise the code paths."""
    torch.manual_seed(0)
    return build_network(NetworkConfig(base=4, depth=2)).eval()
