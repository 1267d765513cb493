"""Command line: ``napari-fcnseg predict | finetune | evaluate | models | demo``.

Errors print one plain line on stderr and exit non-zero (add ``--debug`` for the traceback).
Outputs are written atomically at the end, so a failed or interrupted run leaves no partial file.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
FINETUNE_STEPS = 100  # FinetuneSettings.steps; not imported, to keep --help free of torch


class CliError(Exception):
    """A user-facing error: printed as one line, no traceback."""


def _drive(work, label: str, position: int = 0):
    """Run a progress generator to completion under a tqdm bar on stderr (loss in the postfix)."""
    from tqdm import tqdm

    from .core.progress import run_to_completion

    with tqdm(desc=label, total=None, unit="step", leave=position == 0, position=position,
              file=sys.stderr, dynamic_ncols=True, mininterval=0.5) as bar:
        def update(record) -> None:
            if bar.total != record.total:
                bar.total = record.total
            bar.n = record.step
            if record.loss is not None:
                bar.set_postfix(loss=f"{record.loss:.4f}", refresh=False)
            bar.refresh()

        return run_to_completion(work, update)


def _read(path: str | Path):
    from .io import read_volume

    return read_volume(Path(path))


def _load_model(name: str | None):
    from .core.store import ModelStore

    if name is not None and not name.strip():
        raise CliError("--model is empty; give a model name (napari-fcnseg models list) or a file")
    store = ModelStore()
    return store.load(name or store.default())


def _parse_slices(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise CliError(f"--slices must be comma-separated slice numbers, not {text!r}") from None


def _check_segmentable(volume) -> None:
    from .cohort import unsegmentable

    problem = unsegmentable(volume)
    if problem:
        raise CliError(f"{volume.path.name}: {problem}")


def _output_path(case: Path, out_dir: Path, fmt: str = "auto") -> Path:
    if fmt == "dicom-seg":
        stem = case.name[:-4] if case.name.lower().endswith(".dcm") else case.name
        return out_dir / f"{stem}_seg.dcm"
    name = case.name
    for suffix in (".nii.gz", ".nii", ".tiff", ".tif", ".dcm"):
        if name.lower().endswith(suffix):
            stem = name[: -len(suffix)]
            ext = ".nii.gz" if suffix.startswith(".nii") else ".tif"
            return out_dir / f"{stem}_labels{ext}"
    return out_dir / f"{name}_labels.nii.gz" if case.is_dir() else out_dir / f"{name}_labels.tif"


def _predict_one(model, src: Path, dst: Path, args, position: int = 0) -> None:
    from .core.predict import predict_iter
    from .io import write_labels

    volume = _read(src)
    _check_segmentable(volume)
    if len(volume.series) > 1:
        used = volume.series[0]
        print(f"note: {src.name} holds {len(volume.series)} DICOM series; segmented "
              f"'{used.get('description') or used.get('uid')}' ({used.get('n_slices')} slices). "
              "To pick another, give one of its files as the input.", file=sys.stderr)
    from .cohort import case_modality

    modality = case_modality(args.modality, volume)
    work = predict_iter(model.net, volume.data, modality=modality, device=args.device,
                        batch_size=args.batch_size,
                        probabilities="uint8" if args.probabilities else None)
    result = _drive(work, f"segmenting {src.name}", position)
    from . import __version__

    existed = dst.exists()
    write_labels(dst, result.labels, like=volume, class_names=list(model.class_names),
                 model_name=str(model.metadata.get("name", "")), software_version=__version__)
    if args.probabilities:
        try:
            _write_probabilities(Path(args.probabilities), result.probabilities)
        except BaseException:
            if not existed:  # a failed run leaves neither of its outputs behind
                dst.unlink(missing_ok=True)
            raise


def _write_probabilities(path: Path, probabilities) -> None:
    """Write (class, ...) uint8 probabilities as an ImageJ hyperstack TIFF, atomically."""
    import tifffile

    from .io.volume import atomic_write

    axes = "CZYX"[-probabilities.ndim:] if probabilities.ndim <= 4 else None
    if axes is None:
        raise CliError("--probabilities supports 2D and 3D images only")
    data = probabilities if "Z" in axes else probabilities[:, None]
    data = data.transpose(1, 0, 2, 3)  # ImageJ order: Z, C, Y, X
    atomic_write(path, lambda tmp: tifffile.imwrite(tmp, data, imagej=True,
                                                     metadata={"axes": "ZCYX"}))


def _check_outputs(src: Path, dst: Path, probabilities: str | None,
                   inputs: Sequence[Path] = ()) -> None:
    """Refuse, before any work, outputs that would overwrite an input or cannot be written."""
    from .core.paths import OutputPathError, check_output_path

    outputs = [dst] + ([Path(probabilities)] if probabilities else [])
    for out in outputs:
        if not out.parent.is_dir():
            raise CliError(f"{out}: the folder '{out.parent}' does not exist")
        try:
            check_output_path(out, [src, *inputs])
        except OutputPathError as exc:
            raise CliError(str(exc)) from None
    if probabilities and Path(probabilities).resolve() == dst.resolve():
        raise CliError(f"{dst}: the labels and --probabilities would be the same file")
    if probabilities and Path(probabilities).suffix.lower() not in (".tif", ".tiff"):
        raise CliError(f"{probabilities}: --probabilities writes a TIFF; give it a .tif name")


def cmd_predict(args) -> int:
    """Segment one image, or every case in a folder."""
    from .io import is_supported

    src, dst = Path(args.input), Path(args.output)
    if not src.exists():
        raise CliError(f"{src}: no such file or folder")
    model = _load_model(args.model)
    cases = None
    if src.is_dir() and not _is_dicom_folder(src):
        cases = sorted(p for p in src.iterdir() if is_supported(p))
        if not cases:
            raise CliError(f"{src}: the folder holds no TIFF, NIfTI or DICOM images")
    if cases is None:
        if dst.is_dir():
            dst = _output_path(src, dst, args.format)
        elif args.format == "dicom-seg" and dst.suffix.lower() != ".dcm":
            raise CliError(f"{dst}: --format dicom-seg writes a .dcm file; name it so")
        _check_outputs(src, dst, args.probabilities)
        _predict_one(model, src, dst, args)
        print(f"wrote {dst}")
        return 0
    if args.probabilities:
        raise CliError("--probabilities works with a single input image, not a folder")
    return _predict_cohort(model, cases, dst, args)


def _predict_cohort(model, cases: list[Path], dst: Path, args) -> int:
    """Segment every case of a folder, serially or as Dask tasks (see napari_fcnseg.cohort)."""
    from tqdm import tqdm

    from .cohort import CaseOptions, model_payload, segment_case, threads_per_worker

    dst.mkdir(parents=True, exist_ok=True)
    outputs = {_output_path(c, dst, args.format).resolve(): c for c in cases}
    failed, jobs = [], []
    for case in cases:  # refuse unsafe outputs before any work
        out = _output_path(case, dst, args.format)
        try:
            source = outputs.get(case.resolve())
            if source is not None and source != case:  # e.g. predict DIR DIR, run twice
                raise CliError(f"it is where the labels of {source.name} go, not a scan")
            _check_outputs(case, out, None, inputs=cases)
            jobs.append((str(case), str(out)))
        except (ValueError, OSError, CliError) as err:
            failed.append(case.name)
            print(f"skipped {case.name}: {err}", file=sys.stderr)
    payload = model_payload(model)
    distributed = args.workers is not None or args.scheduler is not None
    options = CaseOptions(args.modality, args.device, args.batch_size,
                          threads_per_worker(args.workers or 1) if distributed else None)
    outer = tqdm(total=len(jobs), desc="cases", unit="case", file=sys.stderr,
                 dynamic_ncols=True)

    def report(job: tuple[str, str], outcome: tuple[str, str]) -> None:
        status, detail = outcome
        outer.update(1)
        if status == "wrote":
            outer.write(f"wrote {detail}", file=sys.stdout)
        else:
            failed.append(Path(job[0]).name)
            outer.write(f"skipped {Path(job[0]).name}: {detail}", file=sys.stderr)

    try:
        if distributed:
            _run_distributed(payload, jobs, options, args, report)
        else:
            for job in jobs:
                name = f"segmenting {Path(job[0]).name}"
                report(job, _drive_case(segment_case, payload, job, options, name))
    except KeyboardInterrupt:
        outer.close()
        print(f"napari-fcnseg: interrupted; {outer.n} case(s) were done before, the rest "
              "were not written (no partial file)", file=sys.stderr)
        return EXIT_INTERRUPTED
    outer.close()
    print(f"segmented {len(cases) - len(failed)} of {len(cases)} cases")
    return 1 if failed else 0


def _drive_case(segment_case, payload, job, options, label: str):
    """One case in this process, with its own progress bar under the cases bar."""
    from tqdm import tqdm

    with tqdm(desc=label, unit="batch", leave=False, position=1, file=sys.stderr,
              dynamic_ncols=True, mininterval=0.5) as bar:
        def update(record) -> None:
            bar.total, bar.n = record.total, record.step
            bar.refresh()

        return segment_case(payload, job[0], job[1], options, update)


def _run_distributed(payload, jobs, options, args, report) -> None:
    """Run the jobs as Dask tasks on an embedded LocalCluster or the cluster at --scheduler."""
    try:
        from distributed import Client
    except ImportError:
        raise CliError("--workers and --scheduler need Dask: pip install "
                       "'napari-fcnseg[cluster]'") from None
    from .cohort import local_client, run_on_dask

    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers must be at least 1, not {args.workers}")
    try:
        client = Client(args.scheduler, timeout=10) if args.scheduler else local_client(
            args.workers)
    except (OSError, TimeoutError, ValueError) as exc:
        raise CliError(f"cannot reach the Dask scheduler {args.scheduler}: {exc}") from None
    try:
        for i, outcome in run_on_dask(client, payload, jobs, options):
            report(jobs[i], outcome)
    finally:
        cluster = None if args.scheduler else client.cluster
        client.close()
        if cluster is not None:
            cluster.close()


def _is_dicom_folder(path: Path) -> bool:
    for p in sorted(path.iterdir())[:50]:
        if p.is_file():
            try:
                with open(p, "rb") as fh:
                    head = fh.read(132)
            except OSError:
                continue
            if head[128:132] == b"DICM" or p.suffix.lower() == ".dcm":
                return True
    return False


def cmd_finetune(args) -> int:
    """Fine-tune a model on annotated slices and save it in the store."""
    import numpy as np

    from .core.finetune import MAX_LABEL, FinetuneSettings, finetune_iter
    from .core.store import ModelStore, sanitize_name

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
    if args.steps < 1:
        raise CliError(f"--steps must be at least 1, not {args.steps}")
    base_name = args.base or store.default()
    base = store.load(base_name)
    values = labels.data if args.ignore_label is None else labels.data[
        labels.data != args.ignore_label]
    top = int(np.max(values)) if values.size else 0
    if top > MAX_LABEL:  # before building a head with one output per value up to it
        raise CliError(f"{Path(args.labels).name}: label value {top}; label values above "
                       f"{MAX_LABEL} are not supported (number the classes 1, 2, 3, ...)")
    if args.classes:
        classes = [c.strip() for c in args.classes.split(",")]
        if len(classes) < 2 or any(not c for c in classes):
            raise CliError("--classes needs at least two comma-separated names, background first")
    else:
        classes = list(base.class_names)
        classes += [f"class {c}" for c in range(len(classes), top + 1)]
    settings = FinetuneSettings(steps=args.steps, lr=args.lr, seed=args.seed,
                                holdout_folds=0 if args.no_heldout else
                                FinetuneSettings.holdout_folds)
    modality = image.modality if image.modality in ("CT", "MR") else "auto"
    work = finetune_iter(base.net, image.data, labels.data, slices=_parse_slices(args.slices),
                         class_names=classes, base_class_names=base.class_names,
                         ignore_label=args.ignore_label, settings=settings, modality=modality,
                         device=args.device)
    result = _drive(work, "fine-tuning")
    if result.stopped:
        print(f"warning: {result.stopped}", file=sys.stderr)
    store.save(result.net, name, result.metadata(parent=base.metadata.get("name", base_name)))
    print(f"Dice on the {len(result.slices)} annotated slices")
    print(f"{'class':>12}  {'starting':>8}  {'held-out':>8}  {'training':>8}")
    for cls in result.dice_train:
        after = result.dice_after.get(cls)
        print(f"{cls:>12}  {result.dice_before[cls]:8.3f}  "
              f"{'-' if after is None else f'{after:.3f}':>8}  {result.dice_train[cls]:8.3f}")
    print("starting: the base model on every annotated slice; "
          f"{result.heldout_description}; training: the saved model on its own training "
          "slices (not a measure of progress)")
    if result.improved is False:
        print(f"note: {name!r} is NOT better than {base_name!r} on annotated slices it did not "
              f"train on; keep using {base_name!r} for the other slices, or annotate more")
    print(f"saved model {name!r} (parent {base_name!r})")
    return 0


def cmd_evaluate(args) -> int:
    """Per-class Dice, voxel counts and volumes of a prediction against a reference."""
    import numpy as np

    from .core.metrics import voxel_counts

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
    from .io import ImageReadError
    from .io.sidecar import read_sidecar

    try:
        sidecar = read_sidecar(path)
    except ImageReadError as exc:
        print(f"warning: {exc}; class numbers are shown instead of names", file=sys.stderr)
        return None
    return list(sidecar["classes"]) if sidecar and sidecar.get("classes") else None


def cmd_models(args) -> int:
    """List, delete, export, import or reset models in the store."""
    from .core.store import ModelStore

    store = ModelStore()
    if args.action == "list":
        default = store.default()
        for info in store.list():
            md = info.metadata
            dice = md.get("dice_after") or md.get("evaluation", {}).get("pooled_dice") or {}
            scores = ", ".join(f"{k} {v:.3f}" for k, v in dice.items())
            mark = "*" if info.name == default else " "
            print(f"{mark} {info.name:<24} parent={md.get('parent') or '-':<16} "
                  f"slices={md.get('num_annotated_slices', '-'):<4} {scores}")
    elif args.action == "delete":
        store.delete(_need(args.name, "delete NAME"))
        print(f"deleted {args.name}")
    elif args.action == "export":
        usage = "export NAME DEST"
        dest = store.export(_need(args.name, usage), _need(args.path, usage))
        print(f"exported {args.name} to {dest}")
    elif args.action == "import":
        info = store.import_model(_need(args.name, "import PATH"), name=args.as_name)
        print(f"imported {info.name}")
    elif args.action == "reset":
        store.reset()
        print("the default model is the bundled model again")
    return 0


def _need(value, usage: str):
    if value is None:
        raise CliError(f"usage: napari-fcnseg models {usage}")
    return value


def cmd_demo(args) -> int:
    """Open napari with a sample volume, the widgets and a segmentation."""
    from .demo import run_demo

    return run_demo(screenshot=args.screenshot, modality=args.modality)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``napari-fcnseg`` command."""
    parser = argparse.ArgumentParser(
        prog="napari-fcnseg", description="Segment CT/MR images with a fully-convolutional "
        "network and fine-tune it on corrected slices.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="segment an image (TIFF, NIfTI, DICOM) or a folder")
    p.add_argument("input", help="image file, DICOM series folder, or a folder of cases")
    p.add_argument("output", help="label file (.tif/.nii.gz), or a folder for batches")
    p.add_argument("--model", help="model name in the store, or an exported model file")
    p.add_argument("--probabilities", help="also write class probabilities (uint8 TIFF)")
    p.add_argument("--modality", default="auto", choices=["auto", "CT", "MR", "other"])
    p.add_argument("--format", default="auto", choices=["auto", "dicom-seg"],
                   help="dicom-seg: write DICOM SEG objects referencing each DICOM series "
                   "(also chosen by an output name ending in .dcm)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or mps")
    p.add_argument("--batch-size", type=int, default=None,
                   help="slices per forward pass (default: 1 on the CPU, 8 on a GPU)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="folders: segment the cases as Dask tasks on N local worker processes "
                   "(needs napari-fcnseg[cluster])")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="folders: send the cases to the Dask cluster at ADDRESS, e.g. "
                   "tcp://10.0.0.5:8786")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("finetune", help="fine-tune a model on annotated slices")
    p.add_argument("--image", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--slices", help="annotated slices, e.g. 3,10,42 (default: non-empty ones)")
    p.add_argument("--base", help="starting model (default: the store's default)")
    p.add_argument("--name", required=True, help="name of the new model")
    p.add_argument("--classes", help="class names, background first, e.g. "
                   "background,liver,tumour (default: the base model's, then 'class N')")
    p.add_argument("--ignore-label", type=int, default=None, metavar="VALUE",
                   help="label value of pixels nobody annotated (partial labels, scribbles): "
                   "they are left out of training; 0 is then an explicit background stroke")
    p.add_argument("--no-heldout", action="store_true",
                   help="skip the held-out Dice estimate (about four times faster)")
    p.add_argument("--steps", type=int, default=FINETUNE_STEPS)
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default: 2e-3 when the labels add classes the model "
                   "does not know, else 1e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("evaluate", help="Dice, voxel counts and volumes per class")
    p.add_argument("prediction")
    p.add_argument("reference")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("models", help="list, delete, export, import or reset models")
    p.add_argument("action", choices=["list", "delete", "export", "import", "reset"])
    p.add_argument("name", nargs="?", help="model name (or file, for import)")
    p.add_argument("path", nargs="?", help="destination file for export")
    p.add_argument("--as", dest="as_name", help="name for an imported model")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("demo", help="open napari with a sample volume and the widgets")
    p.add_argument("--screenshot", help="render the window to this PNG and exit")
    p.add_argument("--modality", default="CT", choices=["CT", "MR"])
    p.set_defaults(func=cmd_demo)
    return parser


def _report_warnings(caught: list, debug: bool) -> None:
    """Our own warnings as one plain line each; libraries' only with --debug."""
    seen = set()
    for w in caught:
        ours = w.category.__module__.startswith("napari_fcnseg")
        text = str(w.message)
        if (ours or debug) and text not in seen:
            seen.add(text)
            print(f"warning: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable = args.func
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = handler(args)
        _report_warnings(caught, args.debug)
        return code
    except KeyboardInterrupt:
        print("napari-fcnseg: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # one plain line unless --debug
        if args.debug:
            raise
        if isinstance(err, KeyError):  # str(KeyError) adds quotes around the message
            message = str(err.args[0]) if err.args else type(err).__name__
        elif isinstance(err, CliError | ValueError | OSError):
            message = str(err) or type(err).__name__
        else:
            message = f"unexpected {type(err).__name__}: {err} (run with --debug for details)"
        print(f"napari-fcnseg: error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
