"""Fully-convolutional networks for slice-wise segmentation.

Two architectures, selectable by name through :func:`build_network`:

``"fcn"``
    The plain FCN of the founding design: three 3x3 conv+ReLU stages (64 channels stride 1,
    128 stride 2, 256 stride 2), two stride-2 transposed convolutions (128, 64) and a 1x1
    convolution to class logits. Output is raw logits.
``"unet"`` (the bundled default)
    A U-Net with skip connections and BatchNorm (or GroupNorm). It spends little compute at
    full resolution: a stride-2 stem, the encoder/decoder at 1/2 ... 1/2**depth resolution, and a
    light full-resolution head that sees the decoder features together with the raw input, so
    boundaries stay sharp. Neighbouring slices can be fed as extra input channels (2.5D).

Every network accepts any H x W: :func:`pad_to_multiple` pads to the network's multiple and the
caller crops back (see :mod:`napari_fcnseg.core.predict`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ARCHITECTURES = ("unet", "fcn")


@dataclass(frozen=True)
class NetworkConfig:
    """Everything needed to rebuild a network before loading its weights.

    Parameters
    ----------
    arch : str
        ``"unet"`` or ``"fcn"``.
    in_channels : int
        Number of input channels; ``2 * context + 1`` for 2.5D input.
    num_classes : int
        Number of output classes, background included.
    base : int
        Channel count at the first level (``"unet"`` only).
    depth : int
        Number of down-sampling steps after the stem (``"unet"`` only).
    norm : str
        ``"batch"`` or ``"group"`` (``"unet"`` only).
    """

    arch: str = "unet"
    in_channels: int = 3
    num_classes: int = 3
    base: int = 16
    depth: int = 4
    norm: str = "batch"

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as a JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkConfig:
        """Build a configuration from a dict, rejecting unknown keys and values.

        Raises
        ------
        ValueError
            If a key is unknown or a value is out of range.
        """
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown network settings: {sorted(unknown)}")
        cfg = cls(**data)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ``ValueError`` if the configuration cannot build a network."""
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {ARCHITECTURES}")
        if self.in_channels < 1 or self.num_classes < 2:
            raise ValueError("a network needs >= 1 input channel and >= 2 classes")
        if self.in_channels % 2 == 0:
            raise ValueError("in_channels must be odd: the slice itself plus neighbours each side")
        if not 1 <= self.depth <= 6 or not 2 <= self.base <= 256:
            raise ValueError("depth must be 1..6 and base 2..256")
        if self.norm not in ("batch", "group"):
            raise ValueError("norm must be 'batch' or 'group'")

    @property
    def context(self) -> int:
        """Neighbouring slices each side fed as extra channels."""
        return self.in_channels // 2


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.BatchNorm2d(channels)


class ConvNormAct(nn.Sequential):
    """3x3 convolution, normalisation and ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1, norm: str = "batch") -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
        )


class SegmentationNet(nn.Module):
    """Base of the networks here: what predict, fine-tune and the store rely on.

    ``config`` is the architecture as stored in a model card, ``head`` the final 1 x 1
    convolution to class logits, ``multiple`` what the input's H and W must be a multiple of.
    """

    config: NetworkConfig
    head: nn.Conv2d
    multiple: int


class PlainFCN(SegmentationNet):
    """The founding design's plain FCN (no skips, no normalisation); multiple of 4."""

    multiple = 4

    def __init__(self, in_channels: int = 1, num_classes: int = 3) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(128, 256, 3, stride=2, padding=1), nn.ReLU(inplace=True),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(256, 128, 2, stride=2), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(128, 64, 2, stride=2), nn.ReLU(inplace=True),
        )
        self.head = nn.Conv2d(64, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return raw class logits with the input's H x W."""
        return self.head(self.decoder(self.encoder(x)))


class UNet(SegmentationNet):
    """U-Net with a stride-2 stem and a light full-resolution head.

    Parameters
    ----------
    in_channels, num_classes, base, depth, norm
        See :class:`NetworkConfig`.
    """

    def __init__(
        self, in_channels: int = 3, num_classes: int = 3, base: int = 16, depth: int = 4,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.multiple = 2 ** (depth + 1)
        widths = [base * 2**i for i in range(depth + 1)]
        self.stem = nn.Sequential(
            ConvNormAct(in_channels, widths[0], stride=2, norm=norm),
            ConvNormAct(widths[0], widths[0], norm=norm),
        )
        self.down = nn.ModuleList(
            nn.Sequential(
                ConvNormAct(widths[i], widths[i + 1], stride=2, norm=norm),
                ConvNormAct(widths[i + 1], widths[i + 1], norm=norm),
            )
            for i in range(depth)
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth)
        )
        self.merge = nn.ModuleList(
            ConvNormAct(2 * widths[i], widths[i], norm=norm) for i in range(depth)
        )
        self.full_res_up = nn.ConvTranspose2d(widths[0], widths[0], 2, stride=2)
        self.refine = ConvNormAct(widths[0] + in_channels, widths[0], norm=norm)
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return raw class logits with the input's H x W (a multiple of ``self.multiple``)."""
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = skips.pop()
        for i in reversed(range(len(self.down))):
            y = self.merge[i](torch.cat([self.up[i](y), skips[i]], dim=1))
        y = self.refine(torch.cat([self.full_res_up(y), x], dim=1))
        return self.head(y)


def build_network(config: NetworkConfig | dict[str, Any]) -> SegmentationNet:
    """Build an untrained network from its configuration.

    Parameters
    ----------
    config : NetworkConfig or dict
        Architecture settings, as stored in a model's metadata.

    Returns
    -------
    torch.nn.Module
        The network, with attributes ``config`` and ``multiple``.
    """
    if isinstance(config, dict):
        config = NetworkConfig.from_dict(config)
    config.validate()
    if config.arch == "fcn":
        net: SegmentationNet = PlainFCN(config.in_channels, config.num_classes)
    else:
        net = UNet(config.in_channels, config.num_classes, config.base, config.depth, config.norm)
    net.config = config
    return net


def untrained_network(arch: str, num_classes: int, in_channels: int = 3) -> SegmentationNet:
    """A freshly initialised network with the built-in models' settings for ``arch``.

    Parameters
    ----------
    arch : str
        ``"unet"`` (base 16, depth 4, BatchNorm) or ``"fcn"`` (the plain FCN).
    num_classes : int
        Output classes, background included.
    in_channels : int
        ``2 * context + 1`` input slices; 3 (one neighbour each side) like the built-in models.
    """
    return build_network(NetworkConfig(arch=arch, in_channels=in_channels,
                                       num_classes=num_classes))


def head_bias(head: nn.Conv2d) -> torch.Tensor:
    """The bias of a network's head (every head built here has one)."""
    if head.bias is None:
        raise ValueError("the network's head has no bias")
    return head.bias


def replace_head(net: SegmentationNet, num_classes: int) -> None:
    """Give ``net`` a freshly initialised head for ``num_classes`` classes, keeping features.

    Background (class 0) and any class shared with the old head keep their weights, so a model
    fine-tuned on a label set with an extra class starts from what it already knew.
    """
    old = net.head
    new = nn.Conv2d(old.in_channels, num_classes, 1)
    keep = min(old.out_channels, num_classes)
    with torch.no_grad():
        new.weight[:keep] = old.weight[:keep]
        head_bias(new)[:keep] = head_bias(old)[:keep]
    net.head = new
    cfg = net.config
    net.config = NetworkConfig(**{**cfg.to_dict(), "num_classes": num_classes})


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the last two axes of ``x`` up to a multiple of ``multiple``.

    Returns
    -------
    padded : torch.Tensor
        ``x`` padded at the bottom/right (reflect where possible, else replicate).
    size : tuple of int
        The original (H, W), to crop the output back.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def fuse_for_inference(net: SegmentationNet) -> SegmentationNet:
    """Fold every BatchNorm into the convolution before it, for faster inference.

    The network must be in eval mode. Returns the same module, modified in place; GroupNorm
    networks are returned unchanged.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if net.training:
        raise ValueError("fuse_for_inference needs a network in eval mode")
    for module in net.modules():
        if not isinstance(module, ConvNormAct):
            continue
        conv, norm = module[0], module[1]
        if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
            module[0] = fuse_conv_bn_eval(conv, norm)
            module[1] = nn.Identity()
    return net
