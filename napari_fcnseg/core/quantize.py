"""Post-training static int8 quantization of the segmentation networks for CPU inference.

:func:`quantize_network` turns a trained network into an int8 one with torch's FX graph mode
quantization (x86 backend): BatchNorm is folded into the convolution before it, Conv+ReLU pairs
run as single int8 kernels, weights are int8 per output channel, activations uint8 with
ranges observed on calibration batches. :func:`calibration_batches` builds those batches from
the image to be segmented exactly as :func:`~napari_fcnseg.core.predict.predict_iter` builds
its input (same normaliser, same neighbouring-slice context, same padding, channels_last), so
the observed ranges are the ranges met at inference.

Transposed convolutions are not handed to torch's int8 ``ConvTranspose2d``: on the x86 and
fbgemm engines that kernel returns wrong values (off by more than the output's own magnitude)
whenever the input and output channel counts differ, and on fbgemm for stride 2 at all; only
qnnpack gets it right. Every 2 x 2, stride-2 transposed convolution (all the upsampling in the
built-in networks) is rewritten first as the exactly equivalent 1 x 1 convolution to
``4 * out_channels`` followed by a 2x pixel shuffle (:class:`PixelShuffleUp`), which quantizes
like any other 1 x 1 convolution; any other transposed convolution stays in float32.

The quantized network runs on the CPU only. It keeps the original's ``config`` and
``multiple``, so :func:`~napari_fcnseg.core.predict.predict` accepts it (with ``device="cpu"``).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .arrays import as_image, read_with_context
from .nets import SegmentationNet, pad_to_multiple
from .normalize import Normalizer, fit_normalizer
from .slices import slice_count

ENGINE = "x86"
DEFAULT_CALIBRATION_SLICES = 8
OBSERVERS = ("minmax", "histogram")


class PixelShuffleUp(nn.Module):
    """A 2 x 2, stride-2 transposed convolution as a 1 x 1 convolution and a pixel shuffle.

    ``out[n, o, 2i + a, 2j + b] = bias[o] + sum_c x[n, c, i, j] * W[c, o, a, b]``: a 1 x 1
    convolution to channel ``(2 a + b) * out_channels + o``, then a rearrangement of those
    channels into the 2 x 2 neighbourhood, so the result equals the transposed convolution up
    to float rounding. The channel order puts the output channels innermost, so on a
    channels_last tensor the rearrangement copies runs of ``2 * out_channels`` contiguous
    values, and its result is channels_last again (which the int8 ``cat`` after it needs for
    its fast path).

    Parameters
    ----------
    transposed : torch.nn.ConvTranspose2d
        A transposed convolution with kernel 2, stride 2, no padding, dilation 1, one group.
    """

    def __init__(self, transposed: nn.ConvTranspose2d) -> None:
        super().__init__()
        if not is_shuffle_equivalent(transposed):
            raise ValueError("only 2 x 2, stride-2, ungrouped transposed convolutions convert")
        cin, cout = transposed.in_channels, transposed.out_channels
        self.out_channels = cout
        self.conv = nn.Conv2d(cin, 4 * cout, 1, bias=True)
        with torch.no_grad():
            weight = transposed.weight.detach()  # (cin, cout, a, b)
            self.conv.weight.copy_(weight.permute(2, 3, 1, 0).reshape(4 * cout, cin, 1, 1))
            bias = transposed.bias
            bias_values = torch.zeros(cout) if bias is None else bias.detach()
            self.conv.bias.copy_(bias_values.repeat(4))  # type: ignore[union-attr]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` by 2 in H and W; channels_last in, channels_last out."""
        y = self.conv(x)
        n, _, h, w = y.shape
        c = self.out_channels
        # (N, [a, b, C], H, W) -> memory order (N, H, a, W, b, C) = channels_last (N, C, 2H, 2W)
        y = y.permute(0, 2, 3, 1).reshape(n, h, w, 2, 2, c).permute(0, 1, 3, 2, 4, 5)
        return y.contiguous().view(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)


def is_shuffle_equivalent(module: nn.Module) -> bool:
    """True for a transposed convolution that :class:`PixelShuffleUp` reproduces exactly."""
    return (isinstance(module, nn.ConvTranspose2d) and tuple(module.kernel_size) == (2, 2)
            and tuple(module.stride) == (2, 2) and tuple(module.padding) == (0, 0)
            and tuple(module.output_padding) == (0, 0) and tuple(module.dilation) == (1, 1)
            and module.groups == 1 and module.padding_mode == "zeros")


def replace_transposed_convs(net: nn.Module) -> int:
    """Swap every convertible transposed convolution in ``net`` for a :class:`PixelShuffleUp`.

    Modifies ``net`` in place and returns how many were replaced.
    """
    replaced = 0
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if is_shuffle_equivalent(child):
                assert isinstance(child, nn.ConvTranspose2d)
                setattr(parent, name, PixelShuffleUp(child))
                replaced += 1
    return replaced


class QuantizedNet(SegmentationNet):
    """An int8 network from :func:`quantize_network`: the graph plus what predict relies on.

    Attributes
    ----------
    graph : torch.nn.Module
        The converted FX graph; takes float32 (B, C, H, W) and returns float32 logits.
    engine : str
        The quantized engine its packed weights were made for; set before every call.
    """

    def __init__(self, graph: nn.Module, source: SegmentationNet, engine: str = ENGINE) -> None:
        super().__init__()
        self.graph = graph
        self.engine = engine
        self.config = source.config
        self.multiple = int(getattr(source, "multiple", 32))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return float32 class logits for a float32 (B, C, H, W) batch in [0, 1]."""
        if torch.backends.quantized.engine != self.engine:
            torch.backends.quantized.engine = self.engine
        out: torch.Tensor = self.graph(x)
        return out


def has_vnni() -> bool:
    """True when the CPU has AVX512-VNNI (int8 dot products accumulated straight to int32).

    Without it, x86 int8 kernels multiply-add pairs of uint8 x int8 products into int16,
    which can saturate for activations using the full 0..255 range; torch's default x86
    settings therefore use 7-bit activations (``reduce_range``).
    """
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx512_vnni" in line.split()
    except OSError:
        pass
    return False


def first_convolution(net: nn.Module) -> str | None:
    """Qualified name of the first convolution in ``net`` (the one that sees the input)."""
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            return name
    return None


def _qconfig_mapping(keep_float: Sequence[str], observer: str, reduce_range: bool) -> Any:
    """x86 mapping: int8 weights per channel, uint8 activations observed by ``observer``."""
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import HistogramObserver, MinMaxObserver

    if observer not in OBSERVERS:
        raise ValueError(f"observer must be one of {OBSERVERS}, not {observer!r}")
    mapping = get_default_qconfig_mapping(ENGINE)
    default = mapping.global_qconfig
    assert default is not None  # the x86 defaults always set one
    kind = MinMaxObserver if observer == "minmax" else HistogramObserver
    mapping.set_global(QConfig(activation=kind.with_args(reduce_range=reduce_range),
                               weight=default.weight))
    # whatever transposed convolution was not rewritten stays float32 (see the module notes)
    mapping.set_object_type(nn.ConvTranspose2d, None)
    for name in keep_float:
        mapping.set_module_name(name, None)
    return mapping


def quantize_network(
    net: SegmentationNet,
    calibration: Iterable[torch.Tensor],
    *,
    keep_float: Sequence[str] | None = None,
    observer: str = "minmax",
    reduce_range: bool | None = None,
) -> QuantizedNet:
    """Return a post-training static int8 copy of ``net`` for the CPU (x86 backend).

    Parameters
    ----------
    net : SegmentationNet
        A trained network (``"unet"`` or ``"fcn"``); it is copied, never changed.
    calibration : iterable of torch.Tensor
        Float32 (B, C, H, W) input batches built as predict builds them, e.g. by
        :func:`calibration_batches` on the image to be segmented; the activation ranges are
        observed on these. At least one batch.
    keep_float : sequence of str, optional
        Qualified names of submodules to leave in float32. Default: the first convolution
        (``"stem.0.0"`` in the U-Net), whose input is the normalised image itself: an 8-bit
        grid over [0, 1] is a few steps across the organ/lesion contrast of a CT window, and
        that convolution costs little (3 input channels).
    observer : {"minmax", "histogram"}
        How activation ranges are observed: the running min/max (fast) or torch's
        ``HistogramObserver``, which searches for the range with the least quantization error
        (several seconds per 512 x 512 calibration slice on two cores).
    reduce_range : bool, optional
        7-bit activations (torch's x86 default, safe on every x86 CPU). Default: full 8 bits
        where the CPU has AVX512-VNNI (:func:`has_vnni`), 7 bits elsewhere.

    Returns
    -------
    QuantizedNet
        The int8 network in eval mode; CPU only; logits as float32.

    Raises
    ------
    ValueError
        If ``calibration`` yields no batch, or ``observer`` is unknown.
    """
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = ENGINE
    work = copy.deepcopy(net).cpu().eval()  # eval: prepare_fx folds BatchNorm only in eval mode
    work = work.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    replace_transposed_convs(work)
    if keep_float is None:
        first = first_convolution(work)
        keep_float = () if first is None else (first,)
    if reduce_range is None:
        reduce_range = not has_vnni()
    mapping = _qconfig_mapping(keep_float, observer, reduce_range)
    batches = iter(calibration)
    first_batch = next(batches, None)
    if first_batch is None:
        raise ValueError("quantize_network needs at least one calibration batch")
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*reduce_range will be deprecated.*")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        prepared = prepare_fx(work, mapping, example_inputs=(first_batch.float(),))
        with torch.inference_mode():
            prepared(first_batch.float())
            for batch in batches:
                prepared(batch.float())
        graph = convert_fx(prepared)
    return QuantizedNet(graph, net)


def calibration_batches(
    net: SegmentationNet,
    image: np.ndarray,
    *,
    slices: Sequence[int] | None = None,
    count: int = DEFAULT_CALIBRATION_SLICES,
    modality: str = "auto",
    normalizer: Normalizer | None = None,
    batch_size: int = 1,
) -> Iterator[torch.Tensor]:
    """Network input batches from ``image``, built as predict builds them.

    Each slice is normalised with the same :class:`~napari_fcnseg.core.normalize.Normalizer`
    predict fits (or ``normalizer``), stacked with its ``net.config.context`` neighbours each
    side (edges repeat the first/last slice), padded to ``net.multiple`` and made
    channels_last.

    Parameters
    ----------
    net : SegmentationNet
        The network to be quantized (for its context and multiple).
    image : numpy.ndarray or array-like
        (Y, X), (Z, Y, X) or (..., Z, Y, X) image, as passed to predict.
    slices : sequence of int, optional
        Slices to use (numbered as in predict); default ``count`` evenly spaced ones.
    count : int
        Number of slices when ``slices`` is not given.
    modality : str
        As for :func:`~napari_fcnseg.core.normalize.fit_normalizer`.
    normalizer : Normalizer, optional
        A pre-fitted intensity mapping; overrides ``modality``.
    batch_size : int
        Slices per yielded batch.

    Yields
    ------
    torch.Tensor
        Float32 (B, 2 * context + 1, H', W') batches, H' and W' padded to ``net.multiple``.
    """
    image = as_image(image)
    shape = tuple(int(n) for n in image.shape)
    if len(shape) < 2:
        raise ValueError(f"expected a 2D image or a stack of slices, got {len(shape)}D")
    norm = normalizer or fit_normalizer(image, modality)
    total = slice_count(shape)
    if slices is None:
        chosen = sorted({int(k) for k in np.linspace(0, total - 1, max(1, min(count, total)))})
    else:
        chosen = [int(k) for k in slices]
    if not chosen or any(k < 0 or k >= total for k in chosen):
        raise ValueError(f"calibration slices must be a non-empty subset of 0..{total - 1}")
    context = net.config.context
    multiple = int(getattr(net, "multiple", 32))
    for start in range(0, len(chosen), max(1, batch_size)):
        rows = [norm(read_with_context(image, k, context))
                for k in chosen[start:start + max(1, batch_size)]]
        x, _ = pad_to_multiple(torch.from_numpy(np.stack(rows)), multiple)
        yield x.contiguous(memory_format=torch.channels_last)


def quantize_for_image(
    net: SegmentationNet,
    image: np.ndarray,
    *,
    count: int = DEFAULT_CALIBRATION_SLICES,
    modality: str = "auto",
    normalizer: Normalizer | None = None,
    keep_float: Sequence[str] | None = None,
    observer: str = "minmax",
) -> QuantizedNet:
    """Quantize ``net`` calibrated on ``count`` evenly spaced slices of ``image``.

    Shorthand for ``quantize_network(net, calibration_batches(net, image, ...))``; the result
    segments ``image`` with ``predict(qnet, image, device="cpu")``.
    """
    batches = calibration_batches(net, image, count=count, modality=modality,
                                  normalizer=normalizer)
    return quantize_network(net, batches, keep_float=keep_float, observer=observer)
