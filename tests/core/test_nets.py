import pytest
import torch

from napari_fcnseg.core.nets import (
    NetworkConfig,
    build_network,
    fuse_for_inference,
    pad_to_multiple,
    replace_head,
)


@pytest.mark.parametrize("arch", ["unet", "fcn"])
@pytest.mark.parametrize("hw", [(64, 64), (37, 50), (1, 1)])
def test_any_size_gives_logits_of_that_size(arch, hw):
    net = build_network(NetworkConfig(arch=arch, base=4, depth=2, in_channels=3)).eval()
    x = torch.rand(2, 3, *hw)
    xp, (h, w) = pad_to_multiple(x, getattr(net, "multiple", 32))
    with torch.no_grad():
        out = net(xp)[..., :h, :w]
    assert out.shape == (2, 3, *hw)


def test_plain_fcn_matches_founding_design():
    net = build_network(NetworkConfig(arch="fcn", in_channels=1, num_classes=3))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    ups = [m for m in net.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.out_channels, c.stride[0]) for c in convs[:3]] == [(64, 1), (128, 2), (256, 2)]
    assert [(u.out_channels, u.stride[0]) for u in ups] == [(128, 2), (64, 2)]
    assert convs[-1].kernel_size == (1, 1) and convs[-1].out_channels == 3
    # the output is raw logits: the last module is the 1x1 head, no ReLU after it
    assert list(net.children())[-1] is convs[-1]
    with torch.no_grad():
        assert (net(torch.randn(1, 1, 32, 32)) < 0).any()


def test_unet_uses_batchnorm_or_groupnorm_never_instancenorm():
    for norm, kind in [("batch", torch.nn.BatchNorm2d), ("group", torch.nn.GroupNorm)]:
        net = build_network(NetworkConfig(base=4, depth=2, norm=norm))
        assert any(isinstance(m, kind) for m in net.modules())
        assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in net.modules())


@pytest.mark.parametrize("bad", [{"arch": "vit"}, {"in_channels": 2}, {"num_classes": 1},
                                 {"depth": 9}, {"norm": "instance"}, {"colour": 1}])
def test_invalid_configs_are_refused(bad):
    with pytest.raises(ValueError):
        build_network({**NetworkConfig(base=4, depth=2).to_dict(), **bad})


def test_bn_folding_keeps_outputs(tiny_net):
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        tiny_net(x)  # touch running stats path in eval
        ref = tiny_net(x)
        fused = fuse_for_inference(tiny_net)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
        torch.testing.assert_close(fused(x), ref, atol=1e-4, rtol=1e-4)


def test_fusing_a_training_network_is_refused():
    with pytest.raises(ValueError):
        fuse_for_inference(build_network(NetworkConfig(base=4, depth=2)).train())


def test_replace_head_keeps_shared_classes(tiny_net):
    old = tiny_net.head.weight.detach().clone()
    replace_head(tiny_net, 5)
    assert tiny_net.head.out_channels == 5 and tiny_net.config.num_classes == 5
    torch.testing.assert_close(tiny_net.head.weight[:3], old)
