"""bfloat16 against float32 inference of the bundled U-Net on the CPU, in one run.

    python benchmarks/bench_bf16.py               # 2 CT-like + 2 MR-like held-out volumes
    python benchmarks/bench_bf16.py --volumes 1   # smoke run

Prints whether this CPU computes bfloat16 natively, ms per 512 x 512 slice of the inference
path predict uses (BatchNorm folded, channels_last; float32 and bfloat16 autocast alternated,
medians), then, on held-out generated volumes (16 x 512 x 512, seeds from 100500, as
bench_int8.py), seconds of ``predict(..., precision=...)`` end to end, Dice per class against
the ground truth for both, and bfloat16's agreement with float32.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from napari_fcnseg.core.device import configure_threads, native_bfloat16
from napari_fcnseg.core.metrics import dice_per_class
from napari_fcnseg.core.phantoms import generate_volume
from napari_fcnseg.core.predict import predict, prepare_for_inference
from napari_fcnseg.core.store import ModelStore


def per_slice_ms(net: torch.nn.Module, repeats: int) -> dict[str, float]:
    """Median ms of one 512 x 512 forward pass in float32 and in bfloat16, alternated."""
    x = torch.rand(1, 3, 512, 512).contiguous(memory_format=torch.channels_last)
    times: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    with torch.inference_mode():
        for i in range(repeats + 2):
            for name in times:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bfloat16"):
                    t = time.perf_counter()
                    net(x)
                    if i >= 2:  # the first passes build the kernels
                        times[name].append((time.perf_counter() - t) * 1000)
    return {name: statistics.median(v) for name, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=2, help="held-out volumes per modality")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    threads = configure_threads()
    cpu = torch.device("cpu")
    net = ModelStore().load("bundled").net
    print(f"{threads} torch threads; native bfloat16: {native_bfloat16(cpu)}")
    ms = per_slice_ms(prepare_for_inference(net, cpu), args.repeats)
    print(f"ms per 512 x 512 slice: float32 {ms['float32']:.1f}, bfloat16 "
          f"{ms['bfloat16']:.1f} ({ms['float32'] / ms['bfloat16']:.2f}x)\n")
    print("| volume | float32 s | bfloat16 s | Dice float32 (organ / lesion) | bfloat16 | "
          "agreement | voxels differing |")
    print("|---|---|---|---|---|---|---|")
    volumes = [(m, 100500 + 2 * i + k) for i in range(args.volumes)
               for k, m in enumerate(("CT", "MR"))]
    for modality, seed in volumes:
        vol = generate_volume(modality, (16, 512, 512), seed)
        out, secs, dice = {}, {}, {}
        for precision in ("float32", "bfloat16"):
            t = time.perf_counter()
            out[precision] = predict(net, vol.image, modality=modality.lower(),
                                     precision=precision, device="cpu").labels
            secs[precision] = time.perf_counter() - t
            d = dice_per_class(out[precision], vol.labels, 3)
            dice[precision] = f"{d[1]:.4f} / {d[2]:.4f}"
        agree = dice_per_class(out["bfloat16"], out["float32"], 3)
        differ = int((out["bfloat16"] != out["float32"]).sum())
        print(f"| {modality} {seed} | {secs['float32']:.2f} | {secs['bfloat16']:.2f} | "
              f"{dice['float32']} | {dice['bfloat16']} | {agree[1]:.4f} / {agree[2]:.4f} | "
              f"{differ:,} |", flush=True)


if __name__ == "__main__":
    main()
