"""Train a built-in model on generated CT-like and MR-like volumes (seeded, CPU-friendly).

Usage::

    python scripts/train_bundled.py                # the recipe that produced the shipped U-Net
    python scripts/train_bundled.py --arch fcn     # the shipped plain FCN (see STAGES below)
    python scripts/train_bundled.py --steps 20 --volumes 4 --out /tmp/w   # a smoke run

Writes ``<name>.pt`` (state_dict) and ``<name>.json`` (model card) into ``--out`` (default: the
package's ``core/weights`` folder), where the name is ``bundled`` for the U-Net and ``fcn`` for
the plain FCN. Long recipes run in stages: each stage continues from the previous one's
weights with ``--init`` and a new ``--seed`` (fresh generated volumes), so no stage needs more
than about forty minutes on two CPU cores. The shipped weights came from::

    # U-Net: 6000 steps lr 3e-3 seed 0, then 3000 steps lr 1e-3 seeds 1 and 2
    #        (a domain-randomised stage on top: see "training" in core/weights/bundled.json)
    # FCN:   see the "training" chain in core/weights/fcn.json (same flags, --arch fcn)
 Training data are seeds 0..N-1; held-out
evaluation uses seeds from 100000 on, which training never sees.

``--synth-fraction F`` replaces that fraction of every batch with crops of domain-randomised
volumes (:mod:`napari_fcnseg.core.synth`: random anatomy and contrast, same three classes),
seeded from ``seed * 1000 + 500000``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from napari_fcnseg import __version__
from napari_fcnseg.core.augment import augment_batch
from napari_fcnseg.core.device import configure_threads
from napari_fcnseg.core.losses import dice_ce_loss
from napari_fcnseg.core.metrics import dice_per_class
from napari_fcnseg.core.nets import NetworkConfig, build_network
from napari_fcnseg.core.normalize import fit_normalizer
from napari_fcnseg.core.phantoms import CLASS_NAMES, generate_volume
from napari_fcnseg.core.predict import predict
from napari_fcnseg.core.slices import stack_slices
from napari_fcnseg.core.synth import synthetic_volume

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "napari_fcnseg" / "core" / "weights"
SIZES = [(20, 256, 256)] * 6 + [(16, 384, 384)] * 3 + [(12, 512, 512)] * 1
HELD_OUT_SEED = 100_000


def make_dataset(n_volumes: int, seed0: int):
    """Generate volumes; return normalised images, labels, lists per volume."""
    images, labels = [], []
    for i in range(n_volumes):
        modality = "CT" if i % 2 == 0 else "MR"
        shape = SIZES[(i // 2) % len(SIZES)]
        ph = generate_volume(modality, shape, seed0 + i)
        images.append(fit_normalizer(ph.image)(ph.image))
        labels.append(ph.labels)
    return images, labels


def sample_batch(images, labels, rng, batch, crop, context):
    """Random 2.5D crops: half on organ slices, a third centred near a lesion, the rest anywhere."""
    xs, ys = [], []
    for _ in range(batch):
        v = int(rng.integers(len(images)))
        vol, lab = images[v], labels[v]
        h, w = vol.shape[1:]
        u = rng.random()
        lesion_at = np.argwhere(lab == 2) if u < 0.35 else np.empty((0, 3))
        if len(lesion_at):
            z, cy, cx = lesion_at[rng.integers(len(lesion_at))]
            y0 = int(np.clip(cy - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1), 0, h - crop))
            x0 = int(np.clip(cx - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1), 0, w - crop))
        else:
            has_fg = np.nonzero(lab.reshape(lab.shape[0], -1).max(1))[0]
            z = rng.choice(has_fg) if has_fg.size and u < 0.85 else rng.integers(vol.shape[0])
            y0, x0 = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
        z = int(z)
        xs.append(stack_slices(vol, [z], context)[0, :, y0:y0 + crop, x0:x0 + crop])
        ys.append(lab[z, y0:y0 + crop, x0:x0 + crop])
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys).astype(np.int64))


def sample_synthetic(pool, rng, batch, crop, context):
    """Random 2.5D crops of the domain-randomised volumes (any slice with both neighbours)."""
    xs, ys = [], []
    for _ in range(batch):
        vol = pool[int(rng.integers(len(pool)))]
        nz, h, w = vol.image.shape
        z = int(rng.integers(context, nz - context))
        y0, x0 = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
        xs.append(stack_slices(vol.image, [z], context)[0, :, y0:y0 + crop, x0:x0 + crop])
        ys.append(vol.labels[z, y0:y0 + crop, x0:x0 + crop])
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys).astype(np.int64))


def evaluate(net, n_volumes: int) -> dict:
    """Dice per class on held-out generated volumes, pooled and per-volume mean."""
    pooled = {name: [0, 0] for name in CLASS_NAMES[1:]}
    per_volume = {name: [] for name in CLASS_NAMES[1:]}
    for i in range(n_volumes):
        modality = "CT" if i % 2 == 0 else "MR"
        shape = (24, 512, 512) if i % 4 >= 2 else (24, 256, 256)
        ph = generate_volume(modality, shape, HELD_OUT_SEED + i)
        pred = predict(net, ph.image, device="cpu").labels
        scores = dice_per_class(pred, ph.labels, len(CLASS_NAMES))
        for c, name in enumerate(CLASS_NAMES[1:], start=1):
            p, r = pred == c, ph.labels == c
            pooled[name][0] += int(2 * np.logical_and(p, r).sum())
            pooled[name][1] += int(p.sum() + r.sum())
            if r.any():
                per_volume[name].append(scores[c])
    return {
        "volumes": n_volumes,
        "pooled_dice": {k: round(a / max(b, 1), 4) for k, (a, b) in pooled.items()},
        "mean_volume_dice": {k: round(float(np.mean(v)), 4) for k, v in per_volume.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("unet", "fcn"), default="unet",
                        help="unet: the bundled model; fcn: the plain FCN")
    parser.add_argument("--steps", type=int, default=6000, help="optimiser steps")
    parser.add_argument("--volumes", type=int, default=120)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=192)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-volumes", type=int, default=16)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--synth-fraction", type=float, default=0.0,
                        help="fraction of each batch from domain-randomised volumes")
    parser.add_argument("--synth-volumes", type=int, default=300)
    parser.add_argument("--init", type=Path, default=None,
                        help="continue from these weights (a second, shorter stage)")
    args = parser.parse_args()

    configure_threads()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    if args.arch == "fcn":
        config = NetworkConfig(arch="fcn", in_channels=3, num_classes=3)
    else:
        config = NetworkConfig(arch="unet", in_channels=3, num_classes=3, base=16, depth=4)
    name = "bundled" if args.arch == "unet" else "fcn"
    net = build_network(config)
    previous = None
    if args.init is not None:
        net.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=True))
        card_path = args.init.with_suffix(".json")
        if card_path.is_file():
            previous = json.loads(card_path.read_text()).get("training")
    t0 = time.perf_counter()
    images, labels = make_dataset(args.volumes, args.seed * 1000)
    print(f"generated {args.volumes} volumes in {time.perf_counter() - t0:.0f}s", flush=True)
    n_synth = round(args.batch * args.synth_fraction)
    synth_seed0 = args.seed * 1000 + 500_000
    pool = [synthetic_volume(synth_seed0 + i) for i in range(args.synth_volumes if n_synth else 0)]
    if pool:
        print(f"generated {len(pool)} domain-randomised volumes", flush=True)

    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    weights = torch.tensor([0.5, 1.0, 2.0])
    steps = args.steps
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps,
                                                pct_start=0.1)
    print(f"training {steps} steps", flush=True)
    t_train = time.perf_counter()
    net.train()
    for step in range(1, steps + 1):
        x, y = sample_batch(images, labels, rng, args.batch - n_synth, args.crop, config.context)
        if n_synth:
            xs, ys = sample_synthetic(pool, rng, n_synth, args.crop, config.context)
            x, y = torch.cat([x, xs]), torch.cat([y, ys])
        x, y, valid = augment_batch(x, y, torch.ones_like(y, dtype=torch.bool), gen)
        loss = dice_ce_loss(net(x.contiguous()), y, class_weights=weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps:
            el = time.perf_counter() - t_train
            print(f"step {step}/{steps} loss {loss.item():.4f} {el:.0f}s", flush=True)
    train_seconds = time.perf_counter() - t_train
    net.eval()
    del images, labels
    scores = evaluate(net, args.eval_volumes)
    print(json.dumps(scores), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), args.out / f"{name}.pt")
    card = {
        "name": name,
        "parent": None,
        "version": __version__,
        "network": config.to_dict(),
        "classes": list(CLASS_NAMES),
        "input": {
            "slices": "2.5D: the slice plus one neighbour each side as 3 channels",
            "normalization": "CT (declared or detected from the HU range): clip to "
                             "[-250, 350] HU, scale to [0, 1]; otherwise: 0.5-99.5 "
                             "percentiles of the volume to [0, 1]",
        },
        "training": {
            "script": "scripts/train_bundled.py",
            "data": f"{args.volumes} generated volumes (half CT-like, half MR-like), seeds "
                    f"{args.seed * 1000}..{args.seed * 1000 + args.volumes - 1}, sizes "
                    "256/384/512 in-plane"
                    + (f"; {n_synth} of {args.batch} crops per batch from {len(pool)} "
                       f"domain-randomised volumes (core/synth.py), seeds {synth_seed0}.."
                       f"{synth_seed0 + len(pool) - 1}" if n_synth else ""),
            "steps": steps, "batch": args.batch, "crop": args.crop, "lr": args.lr,
            "optimizer": "AdamW + OneCycle", "loss": "cross-entropy + soft Dice",
            "augmentation": "flips, 90-degree rotations, gamma/gain/shift/noise",
            "seed": args.seed, "seconds": round(train_seconds),
            "initialised_from": previous,
            "machine": f"{platform.processor() or platform.machine()}, "
                       f"{torch.get_num_threads()} threads, torch {torch.__version__}",
        },
        "evaluation": {"held_out_seeds_from": HELD_OUT_SEED, **scores},
    }
    (args.out / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
