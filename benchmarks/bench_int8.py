"""int8 against float32 CPU inference for the built-in networks, in one run.

For each model (default the bundled U-Net):

* ms per 512 x 512 slice of the float32 path predict uses (``prepare_for_inference``: BatchNorm
  folded, channels_last) and of the int8 network from ``core/quantize.py`` (calibrated on the
  held-out volume the slices come from), at batch sizes 1 and 4; the two are run alternately,
  repeat after repeat, and the medians reported, so both see the same machine load;
* the seconds the int8 calibration takes on a volume (a cost paid once per volume);
* Dice per class (organ, lesion) of float32 and of int8 against the ground truth, and int8
  against float32 (agreement), on held-out generated volumes (seeds from 100500: training used
  seeds below 3000), half CT-like and half MR-like, each segmented end to end through
  ``predict`` (int8: calibrated on that volume's own slices first);
* when int8 misses a target (>= 1.6x faster per slice, Dice within 0.005 of float32 for every
  class), or with ``--profile``: a per-operator torch.profiler breakdown of one int8 and one
  float32 forward pass, grouped into where the time goes.

Usage::

    python benchmarks/bench_int8.py                          # bundled U-Net, 2 CT + 2 MR volumes
    python benchmarks/bench_int8.py --models bundled,fcn --profile
    python benchmarks/bench_int8.py --volumes 1 --slices 4 --repeats 3   # smoke run
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import defaultdict

import numpy as np
import torch

from napari_fcnseg.core.device import configure_threads
from napari_fcnseg.core.metrics import dice_per_class, voxel_counts
from napari_fcnseg.core.phantoms import CLASS_NAMES, generate_volume
from napari_fcnseg.core.predict import predict, prepare_for_inference
from napari_fcnseg.core.quantize import calibration_batches, has_vnni, quantize_network
from napari_fcnseg.core.store import ModelStore

HELD_OUT_SEED = 100_500
SPEEDUP_TARGET = 1.6
DICE_TOLERANCE = 0.005
FLAGS = ("avx512_vnni", "avx_vnni", "avx512f", "avx2")


def machine() -> str:
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("", "unknown CPU", "x86_64"):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    has = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in FLAGS)
    return (f"{model}; {has}; torch {torch.__version__}, quantized engine "
            f"{torch.backends.quantized.engine}, {torch.get_num_threads()} threads, "
            f"Python {platform.python_version()}")


def timed(fn, x) -> float:
    t = time.perf_counter()
    fn(x)
    return time.perf_counter() - t


def slice_speed(fp32, int8, batches: dict[int, torch.Tensor], repeats: int):
    """Median ms per slice {batch size: (fp32, int8)}, the two alternating repeat by repeat."""
    times: dict[tuple[int, str], list[float]] = defaultdict(list)
    with torch.inference_mode():
        for x in batches.values():  # warm up both (allocator, packed weights, caches)
            fp32(x), int8(x)
        for r in range(repeats):
            for bs, x in batches.items():
                order = (("fp32", fp32), ("int8", int8)) if r % 2 == 0 else \
                        (("int8", int8), ("fp32", fp32))
                for name, fn in order:
                    times[(bs, name)].append(timed(fn, x) / bs * 1e3)
    return {bs: (float(np.median(times[(bs, "fp32")])), float(np.median(times[(bs, "int8")])))
            for bs in batches}


CATEGORIES = (
    ("int8 conv (incl. fused ReLU)", ("quantized::conv",)),
    ("quantize / dequantize", ("quantize_per_tensor", "dequantize")),
    ("cat (skip connections)", ("aten::cat", "quantized::cat")),
    ("pixel-shuffle copy (upsampling)", ("aten::clone", "aten::contiguous", "aten::copy_")),
    ("fp32 conv", ("mkldnn_convolution", "aten::_convolution", "aten::conv")),
    ("fp32 transposed conv", ("conv_transpose", "slow_conv_transpose")),
    ("fp32 ReLU", ("aten::relu", "aten::clamp_min")),
)


def profile(fn, x, reps: int = 3) -> tuple[list[tuple[str, float, int]], float]:
    """Self CPU ms per forward by operator, and the total."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch.inference_mode():
        fn(x)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(reps):
                fn(x)
    rows = [(e.key, e.self_cpu_time_total / 1e3 / reps, e.count // reps)
            for e in prof.key_averages() if e.self_cpu_time_total > 0]
    rows.sort(key=lambda r: -r[1])
    return rows, sum(r[1] for r in rows)


def categorise(rows) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for key, ms, _ in rows:
        for name, keys in CATEGORIES:
            if any(k in key for k in keys):
                out[name] += ms
                break
        else:
            out["other"] += ms
    return out


def print_profile(label: str, fp32, int8, x) -> None:
    int8_rows, int8_total = profile(int8, x)
    fp32_rows, fp32_total = profile(fp32, x)
    side = " x ".join(str(n) for n in x.shape[-2:])
    print(f"\n### Where the time goes ({label}, one {side} slice, batch 1, torch.profiler "
          "self CPU ms per forward)\n")
    int8_cat, fp32_cat = categorise(int8_rows), categorise(fp32_rows)
    print("| group | int8 ms | fp32 ms |")
    print("|---|---:|---:|")
    for name in [c[0] for c in CATEGORIES] + ["other"]:
        if int8_cat.get(name) or fp32_cat.get(name):
            print(f"| {name} | {int8_cat.get(name, 0):.1f} | {fp32_cat.get(name, 0):.1f} |")
    print(f"| **total** | **{int8_total:.1f}** | **{fp32_total:.1f}** |")
    for name, rows in (("int8", int8_rows), ("fp32", fp32_rows)):
        print(f"\n{name} operators (self CPU ms per forward, calls per forward):\n")
        print("| operator | ms | calls |")
        print("|---|---:|---:|")
        for key, ms, calls in rows[:10]:
            print(f"| `{key}` | {ms:.2f} | {calls} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="bundled")
    parser.add_argument("--volumes", type=int, default=2, help="held-out volumes per modality")
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration-slices", type=int, default=8)
    parser.add_argument("--observer", default="minmax", choices=("minmax", "histogram"))
    parser.add_argument("--profile", action="store_true", help="always print the profile")
    args = parser.parse_args()
    configure_threads(args.threads)
    torch.set_num_threads(args.threads)
    torch.backends.quantized.engine = "x86"
    cpu = torch.device("cpu")
    shape = (args.slices, args.side, args.side)

    t0 = time.perf_counter()
    volumes = []
    for i in range(args.volumes):
        for j, modality in enumerate(("CT", "MR")):
            seed = HELD_OUT_SEED + 2 * i + j
            volumes.append((modality, seed, generate_volume(modality, shape, seed)))
    gen_s = time.perf_counter() - t0
    names = [n for n in args.models.split(",") if n]
    store = ModelStore()
    speed_rows, dice_rows, pooled_rows, profiles = [], [], [], []
    missed: dict[str, bool] = defaultdict(bool)
    for name in names:
        net = store.load(name).net.eval()
        fp32 = prepare_for_inference(net, cpu)
        # speed on real slices of the first held-out CT volume, int8 calibrated on it
        image = volumes[0][2].image
        t = time.perf_counter()
        int8 = quantize_network(net, calibration_batches(net, image,
                                                         count=args.calibration_slices),
                                observer=args.observer)
        calib_s = time.perf_counter() - t
        mid = args.slices // 2
        rows = [min(max(k, 0), args.slices - 1) for k in range(mid - 2, mid + 2)]
        batch4 = next(calibration_batches(net, image, slices=rows, batch_size=4))
        batches = {1: batch4[:1].contiguous(memory_format=torch.channels_last), 4: batch4}
        speed = slice_speed(fp32, int8, batches, args.repeats)
        for bs, (f_ms, q_ms) in speed.items():
            speed_rows.append((name, bs, f_ms, q_ms, f_ms / q_ms, calib_s))
            missed[name] |= f_ms / q_ms < SPEEDUP_TARGET

        # Dice end to end through predict, int8 calibrated on each volume itself
        pooled = {k: [] for k in ("ref", "fp32", "int8")}
        for modality, seed, ph in volumes:
            f_lab = predict(net, ph.image).labels
            qnet = quantize_network(net, calibration_batches(net, ph.image,
                                                             count=args.calibration_slices),
                                    observer=args.observer)
            q_lab = predict(qnet, ph.image, device="cpu").labels
            d_f = dice_per_class(f_lab, ph.labels, 3)
            d_q = dice_per_class(q_lab, ph.labels, 3)
            agree = dice_per_class(q_lab, f_lab, 3)
            gt_voxels = {c: counts[3] for c, counts in voxel_counts(f_lab, ph.labels, 3).items()}
            dice_rows.append((name, f"{modality} {seed}", d_f, d_q, agree,
                              float((q_lab == f_lab).mean()), gt_voxels))
            pooled["ref"].append(ph.labels)
            pooled["fp32"].append(f_lab)
            pooled["int8"].append(q_lab)
            missed[name] |= any(abs(d_q[c] - d_f[c]) > DICE_TOLERANCE for c in (1, 2))
        ref, f_all, q_all = (np.concatenate(pooled[k]) for k in ("ref", "fp32", "int8"))
        pooled_rows.append((name, dice_per_class(f_all, ref, 3), dice_per_class(q_all, ref, 3),
                            dice_per_class(q_all, f_all, 3)))
        profiles.append((name, fp32, int8, batches[1]))

    print(f"\nMachine: {machine()}")
    print(f"Command: python {' '.join(sys.argv)}")
    print(f"Held-out volumes: {len(volumes)} ({args.volumes} CT + {args.volumes} MR), "
          f"{args.slices} x {args.side} x {args.side}, seeds {HELD_OUT_SEED}.."
          f"{HELD_OUT_SEED + len(volumes) - 1} (generated in {gen_s:.0f} s); int8 calibrated on "
          f"{args.calibration_slices} evenly spaced slices of the volume segmented, "
          f"{args.observer} observer, {'8' if has_vnni() else '7'}-bit activations, first "
          "convolution kept float32\n")
    print(f"### Speed ({args.side} x {args.side} slices, median of {args.repeats} alternating "
          "repeats)\n")
    print("| model | batch | fp32 ms/slice | int8 ms/slice | speed-up | int8 calibration s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, bs, f_ms, q_ms, up, calib_s in speed_rows:
        print(f"| {name} | {bs} | {f_ms:.1f} | {q_ms:.1f} | {up:.2f}x | {calib_s:.1f} |")
    organ, lesion = CLASS_NAMES[1], CLASS_NAMES[2]
    print(f"\n### Dice per class ({organ} / {lesion})\n")
    print(f"| model | volume | GT voxels {organ}/{lesion} | fp32 vs GT | int8 vs GT | "
          "int8 - fp32 | int8 vs fp32 (agreement) | pixels equal |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")

    def pair(d):
        return f"{d[1]:.4f} / {d[2]:.4f}"

    for name, vol, d_f, d_q, agree, equal, gt in dice_rows:
        delta = f"{d_q[1] - d_f[1]:+.4f} / {d_q[2] - d_f[2]:+.4f}"
        print(f"| {name} | {vol} | {gt[1]} / {gt[2]} | {pair(d_f)} | {pair(d_q)} | {delta} | "
              f"{pair(agree)} | {equal:.5f} |")
    for name, d_f, d_q, agree in pooled_rows:
        delta = f"{d_q[1] - d_f[1]:+.4f} / {d_q[2] - d_f[2]:+.4f}"
        print(f"| {name} | **pooled** | | {pair(d_f)} | {pair(d_q)} | {delta} | {pair(agree)} "
              "| |")
    verdict = ", ".join(f"{name} {'missed' if missed[name] else 'met'}" for name in names)
    print(f"\nTargets (int8 >= {SPEEDUP_TARGET}x per slice at every batch size, |int8 - fp32| "
          f"Dice <= {DICE_TOLERANCE} per class on every volume): {verdict}")
    if any(missed.values()) or args.profile:
        for name, fp32, int8, x in profiles:
            print_profile(name, fp32, int8, x)


if __name__ == "__main__":
    main()
