"""The one place that decides the torch device and the CPU thread count."""

from __future__ import annotations

import os

import torch

DEVICE_ENV = "NAPARI_FCNSEG_DEVICE"
THREADS_ENV = "NAPARI_FCNSEG_THREADS"
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
_threads_set = False


def available_devices() -> list[str]:
    """Return the device names usable on this machine, best first (always ends with cpu)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return [*found, "cpu"]


def configure_threads(threads: int | None = None) -> int:
    """Set torch's CPU thread count once; later calls only report it.

    Parameters
    ----------
    threads : int, optional
        Thread count; defaults to ``$NAPARI_FCNSEG_THREADS`` or all cores.

    Returns
    -------
    int
        The thread count in effect.
    """
    global _threads_set
    if not _threads_set:
        wanted = threads or int(os.environ.get(THREADS_ENV, "0") or 0) or os.cpu_count() or 1
        torch.set_num_threads(max(1, wanted))
        _threads_set = True
    return torch.get_num_threads()


def pick_device(name: str | None = None) -> torch.device:
    """Return the device to run on: CUDA, then Apple MPS, then CPU.

    Parameters
    ----------
    name : str, optional
        ``"auto"`` (default), ``"cpu"``, ``"cuda"`` or ``"mps"``; ``$NAPARI_FCNSEG_DEVICE``
        is used when ``name`` is None.

    Raises
    ------
    ValueError
        If the requested device is unknown or not available here.
    """
    name = (name or os.environ.get(DEVICE_ENV) or "auto").lower()
    if name not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    usable = available_devices()
    if name == "auto":
        name = usable[0]
    elif name not in usable:
        raise ValueError(f"device {name!r} is not available on this machine ({', '.join(usable)})")
    configure_threads()
    return torch.device(name)


PRECISIONS = ("auto", "float32", "bfloat16")


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 convolutions natively (faster than float32).

    True on CPUs with AVX-512 BF16 or AMX instructions; False elsewhere, including CUDA and
    MPS (their training stays in float32 here). On other CPUs bfloat16 is emulated and slower.
    """
    if device.type != "cpu":
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    cpu = getattr(torch, "cpu", None)
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def training_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The compute type of training on ``device`` for a precision setting.

    Parameters
    ----------
    precision : {"auto", "float32", "bfloat16"}
        ``"auto"`` picks bfloat16 where :func:`native_bfloat16` says it is native, else
        float32. Weights, optimiser state and the loss stay float32 in every case; bfloat16
        applies to the convolutions (autocast).
    device : torch.device
        Where training runs.

    Raises
    ------
    ValueError
        For an unknown precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "bfloat16" or (precision == "auto" and native_bfloat16(device)):
        return torch.bfloat16
    return torch.float32
