import subprocess
import sys

import pytest
import torch

from napari_fcnseg.core.adam import Adam


def _net(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4),
                               torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 1))


def test_takes_the_same_steps_as_torch_adam_with_a_changing_learning_rate():
    ours, ref = _net(0), _net(0)
    frozen = ours[3].bias, ref[3].bias  # no gradient for a while, as after freezing
    opt = Adam(ours.parameters(), lr=3e-3)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    for step in range(25):
        x = torch.randn(2, 2, 9, 9, generator=gen)
        for net, o in ((ours, opt), (ref, ref_opt)):
            lr = 3e-3 * (0.5 + 0.5 * torch.cos(torch.tensor(step / 25 * 3.14159)).item())
            if isinstance(o, Adam):
                o.lr = lr
            else:
                o.param_groups[0]["lr"] = lr
            o.zero_grad()
            net(x).square().mean().backward()
            if step < 10:
                frozen[net is ref].grad = None
            o.step()
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert not torch.equal(ours[0].weight, _net(0)[0].weight)  # it did move


def test_refuses_bad_settings_and_no_parameters():
    with pytest.raises(ValueError, match="no parameters"):
        Adam([], lr=1e-3)
    with pytest.raises(ValueError, match="invalid"):
        Adam(_net(0).parameters(), lr=0)


def test_fine_tuning_does_not_import_torch_dynamo():
    """The import that froze the viewer for 0.2 s must not come back."""
    code = (
        "import sys\n"
        "from napari_fcnseg.core.finetune import FinetuneSettings, finetune\n"
        "from napari_fcnseg.core.nets import build_network, NetworkConfig\n"
        "from napari_fcnseg.core.phantoms import generate_volume\n"
        "p = generate_volume('CT', (4, 32, 32), 3)\n"
        "net = build_network(NetworkConfig(arch='unet', base=4, depth=2))\n"
        "finetune(net, p.image, p.labels, slices=[1, 2], modality='CT',\n"
        "         settings=FinetuneSettings(steps=2, batch_size=1, crop=32))\n"
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
