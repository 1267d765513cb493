"""The fine-tuning losses: Dice + cross-entropy on annotated pixels, and the L2-SP pull."""

import torch

from napari_fcnseg.core.adam import lr_factor
from napari_fcnseg.core.losses import dice_ce_loss, l2sp_penalty
from napari_fcnseg.core.nets import NetworkConfig, build_network


def test_l2sp_penalty_measures_drift_of_anchored_trainable_weights_only():
    torch.manual_seed(0)
    net = build_network(NetworkConfig(base=4, depth=2))
    anchors = {n: p.detach().clone() for n, p in net.named_parameters()
               if not n.startswith("head.")}
    assert float(l2sp_penalty(net, anchors)) == 0.0
    with torch.no_grad():
        net.head.weight.add_(5.0)  # no anchor: not pulled
        first = next(p for n, p in net.named_parameters() if n in anchors)
        first.add_(0.5)
    expected = 0.25 * first.numel()
    assert abs(float(l2sp_penalty(net, anchors)) - expected) < 1e-3 * expected
    first.requires_grad_(False)  # frozen weights are not pulled either
    assert float(l2sp_penalty(net, anchors)) == 0.0


def test_dice_ce_loss_ignores_pixels_nobody_annotated():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 8, 8)
    target = torch.randint(0, 3, (1, 8, 8))
    valid = torch.zeros(1, 8, 8, dtype=torch.bool)
    valid[:, :4] = True
    scrambled = target.clone()
    scrambled[:, 4:] = (scrambled[:, 4:] + 1) % 3
    same = dice_ce_loss(logits, target, valid), dice_ce_loss(logits, scrambled, valid)
    assert torch.allclose(*same)
    assert not torch.allclose(dice_ce_loss(logits, target), dice_ce_loss(logits, scrambled))


def test_schedule_warms_up_then_decays_to_zero():
    factors = [lr_factor(s, 100) for s in range(100)]
    assert factors[0] == 0.1 and factors[9] == 1.0
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert factors[-1] < 0.01
