"""``napari-fcnseg finetune`` and ``evaluate``: learn from annotated slices, and score labels."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from ._common import EXIT_INTERRUPTED, CliError, _drive, _parse_slices, _read


def _starting_model(args, store, top: int):
    """The model a round starts from: a stored one, or an untrained network (--from-scratch)."""
    if not args.from_scratch:
        if args.arch is not None:
            raise CliError("--arch chooses the architecture of a new network: use it with "
                           "--from-scratch, or start from a built-in model with --base fcn "
                           "or --base bundled")
        name = args.base or store.default()
        return store.load(name), name
    if args.base is not None:
        raise CliError("--from-scratch starts from an untrained network; leave out --base")
    import torch

    from ..core.model_card import LoadedModel
    from ..core.nets import untrained_network

    arch = args.arch or "unet"
    torch.manual_seed(args.seed)
    n_classes = max(len(_classes_option(args) or []), top + 1, 2)
    net = untrained_network(arch, n_classes)
    return LoadedModel(net, {"name": None, "classes": []}), f"untrained {arch}"


def _classes_option(args) -> list[str] | None:
    if not args.classes:
        return None
    classes = [c.strip() for c in args.classes.split(",")]
    if len(classes) < 2 or any(not c for c in classes):
        raise CliError("--classes needs at least two comma-separated names, background first")
    return classes


def cmd_finetune(args) -> int:
    """Fine-tune a model (or train an untrained network) on annotated slices; save it."""
    import numpy as np

    from ..core.finetune import MAX_LABEL, FinetuneSettings, finetune_iter
    from ..core.store import ModelStore, sanitize_name

    image, labels = _read(args.image), _read(args.labels)
    if image.data.shape != labels.data.shape:
        raise CliError(f"image shape {image.data.shape} and labels shape "
                       f"{labels.data.shape} differ")
    if labels.data.dtype.kind not in "iub":
        raise CliError(f"{Path(args.labels).name}: labels must be integers, "
                       f"not {labels.data.dtype}")
    store = ModelStore()
    name = sanitize_name(args.name)
    if name in store.names():
        raise CliError(f"a model named {name!r} already exists; choose another --name")
    if args.steps is not None and args.steps < 1:
        raise CliError(f"--steps must be at least 1, not {args.steps}")
    values = labels.data if args.ignore_label is None else labels.data[
        labels.data != args.ignore_label]
    top = int(np.max(values)) if values.size else 0
    if top > MAX_LABEL:  # before building a head with one output per value up to it
        raise CliError(f"{Path(args.labels).name}: label value {top}; label values above "
                       f"{MAX_LABEL} are not supported (number the classes 1, 2, 3, ...)")
    base, base_name = _starting_model(args, store, top)
    classes = _classes_option(args)
    if classes is None:
        classes = list(base.class_names) or ["background"]
        classes += [f"class {c}" for c in range(len(classes), max(top + 1, 2))]
    chosen = {"seed": args.seed, "precision": args.precision,
              **({"steps": args.steps} if args.steps else {}),
              **({"lr": args.lr} if args.lr else {})}
    if args.no_heldout:
        chosen["holdout_folds"] = 0
    settings = (FinetuneSettings.from_scratch(**chosen) if args.from_scratch
                else FinetuneSettings(**chosen))
    modality = image.modality if image.modality in ("CT", "MR") else "auto"
    work = finetune_iter(base.net, image.data, labels.data, slices=_parse_slices(args.slices),
                         class_names=classes,
                         base_class_names=None if args.from_scratch else base.class_names,
                         ignore_label=args.ignore_label, settings=settings, modality=modality,
                         device=args.device)
    ready = []  # the trained model, handed out before its held-out check

    def keep_ready(record) -> None:
        if record.result is not None:
            ready.append(record.result)

    try:
        result = _drive(work, "training" if args.from_scratch else "fine-tuning",
                        on_record=keep_ready)
    except KeyboardInterrupt:
        if not ready:
            raise  # nothing trained yet: nothing is written
        result = replace(ready[0], pending="the held-out check was interrupted")
    if result.stopped:
        print(f"warning: {result.stopped}", file=sys.stderr)
    metadata = result.metadata(parent=None if args.from_scratch else
                               base.metadata.get("name", base_name))
    if args.from_scratch:
        metadata["from_scratch"] = base.net.config.arch
    store.save(result.net, name, metadata)
    _print_scores(result, "the untrained network" if args.from_scratch else "the base model")
    if result.improved is False:
        print(f"note: {name!r} is NOT better than {base_name!r} on annotated slices it did not "
              f"train on; keep using {base_name!r} for the other slices, or annotate more")
    origin = f"trained from an {base_name} network" if args.from_scratch else (
        f"parent {base_name!r}")
    print(f"saved model {name!r} ({origin})")
    if result.pending:
        print(f"napari-fcnseg: interrupted during the held-out check; {name!r} is saved without "
              "a held-out estimate", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _print_scores(result, starting: str) -> None:
    """The Dice table of a round, each column saying what it was measured on."""
    print(f"Dice on the {len(result.slices)} annotated slices")
    print(f"{'class':>12}  {'starting':>8}  {'held-out':>8}  {'training':>8}")
    for cls in result.dice_train:
        after = result.dice_after.get(cls)
        print(f"{cls:>12}  {result.dice_before[cls]:8.3f}  "
              f"{'-' if after is None else f'{after:.3f}':>8}  {result.dice_train[cls]:8.3f}")
    print(f"starting: {starting} on every annotated slice; "
          f"{result.heldout_description}; training: the saved model on its own training "
          "slices (not a measure of progress)")


def cmd_evaluate(args) -> int:
    """Per-class Dice, voxel counts and volumes of a prediction against a reference."""
    import numpy as np

    from ..core.metrics import voxel_counts

    pred, ref = _read(args.prediction), _read(args.reference)
    if pred.data.shape != ref.data.shape:
        raise CliError(f"prediction shape {pred.data.shape} and reference shape "
                       f"{ref.data.shape} differ")
    for vol in (pred, ref):
        if vol.data.dtype.kind not in "iub":
            raise CliError(f"{vol.path.name}: a label map must hold integers, "
                           f"not {vol.data.dtype}")
    voxel_ml = float(np.prod(ref.spacing)) / 1000.0
    names = _class_names_of(args.prediction) or _class_names_of(args.reference) or []
    rows = []
    for c, (inter, total, n_pred, n_ref) in voxel_counts(pred.data, ref.data).items():
        name = names[c] if c < len(names) else str(c)
        rows.append({"class": c, "name": name,
                     "dice": round(2 * inter / total, 4) if total else 1.0,
                     "voxels_pred": n_pred, "voxels_ref": n_ref,
                     "ml_pred": round(n_pred * voxel_ml, 3), "ml_ref": round(n_ref * voxel_ml, 3)})
    if args.json:
        print(json.dumps({"spacing_mm": list(ref.spacing), "classes": rows}, indent=2))
        return 0
    width = max([5, *(len(r["name"]) for r in rows)])
    print(f"{'class':>{width}} {'Dice':>7} {'voxels pred':>12} {'voxels ref':>11} "
          f"{'mL pred':>9} {'mL ref':>9}")
    for r in rows:
        print(f"{r['name']:>{width}} {r['dice']:>7.4f} {r['voxels_pred']:>12} "
              f"{r['voxels_ref']:>11} {r['ml_pred']:>9.2f} {r['ml_ref']:>9.2f}")
    return 0


def _class_names_of(path: str) -> list[str] | None:
    """Class names from the sidecar saved beside a label file, if any (see io.sidecar)."""
    from ..io import ImageReadError
    from ..io.sidecar import read_sidecar

    try:
        sidecar = read_sidecar(path)
    except ImageReadError as exc:
        print(f"warning: {exc}; class numbers are shown instead of names", file=sys.stderr)
        return None
    return list(sidecar["classes"]) if sidecar and sidecar.get("classes") else None
