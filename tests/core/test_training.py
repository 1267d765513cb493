"""The training loop: a weight-space blend back towards the starting weights, precision."""

import math

import torch

from napari_fcnseg.core.finetune import FinetuneSettings
from napari_fcnseg.core.nets import NetworkConfig, build_network
from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.core.training import train_iter


def _trained(blend: float) -> tuple[dict, dict]:
    torch.manual_seed(0)
    net = build_network(NetworkConfig(base=4, depth=2))
    start = {k: v.clone() for k, v in net.state_dict().items()}
    xs = torch.rand(2, 3, 64, 64)
    ys = (xs[:, 1] > 0.5).long()
    valid = torch.ones_like(ys, dtype=torch.bool)
    settings = FinetuneSettings(steps=5, crop=64, lr=1e-2, blend_start=blend, encoder_lr_factor=1.0)
    run_to_completion(train_iter(net, xs, ys, valid, settings, torch.device("cpu")))
    return start, net.state_dict()


def test_blend_moves_the_trained_weights_back_towards_the_start():
    start, trained = _trained(0.0)
    _, half = _trained(0.5)
    _, back = _trained(1.0)
    moved = [k for k, v in trained.items() if v.is_floating_point() and
             not torch.equal(v, start[k])]
    assert moved  # training changed weights, or the test would prove nothing
    for k in moved:
        assert torch.allclose(back[k], start[k], atol=1e-6)
        assert torch.allclose(half[k], (start[k] + trained[k]) / 2, atol=1e-5)


def _train_watching_the_head(precision: str, steps: int, **settings) -> tuple:
    """Train a small network; return it, the dtypes its head computed in, and the losses."""
    torch.manual_seed(0)
    net = build_network(NetworkConfig(base=4, depth=2))
    seen = []
    net.head.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    xs = torch.rand(2, 3, 64, 64)
    ys = (xs[:, 1] > 0.5).long()
    valid = torch.ones_like(ys, dtype=torch.bool)
    chosen = FinetuneSettings(steps=steps, crop=64, lr=1e-2, precision=precision, **settings)
    losses = [p.loss for p in train_iter(net, xs, ys, valid, chosen, torch.device("cpu"))]
    return net, seen, losses


def test_bfloat16_training_runs_the_convolutions_in_bfloat16_and_keeps_float32_weights():
    net, seen, losses = _train_watching_the_head("bfloat16", 30, encoder_lr_factor=1.0,
                                                 anchor_weight=0.0)
    assert seen and set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < sum(losses[:5])  # it learns


def test_float32_training_stays_in_float32():
    _, seen, _ = _train_watching_the_head("float32", 2)
    assert set(seen) == {torch.float32}
