"""``napari-fcnseg predict``: one image, or every case of a folder (serially or on Dask)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ._common import EXIT_INTERRUPTED, CliError, _drive, _load_model, _parse_slices, _read


def _check_segmentable(volume) -> None:
    from ..cohort import unsegmentable

    problem = unsegmentable(volume)
    if problem:
        raise CliError(f"{volume.path.name}: {problem}")


def _output_path(case: Path, out_dir: Path, fmt: str = "auto") -> Path:
    if fmt == "dicom-seg":
        stem = case.name[:-4] if case.name.lower().endswith(".dcm") else case.name
        return out_dir / f"{stem}_seg.dcm"
    name = case.name
    for suffix in (".nii.gz", ".nii", ".tiff", ".tif", ".dcm", ".zarr"):
        if name.lower().endswith(suffix):
            stem = name[: -len(suffix)]
            ext = {".nii.gz": ".nii.gz", ".nii": ".nii.gz", ".zarr": ".zarr"}.get(suffix, ".tif")
            return out_dir / f"{stem}_labels{ext}"
    return out_dir / f"{name}_labels.nii.gz" if case.is_dir() else out_dir / f"{name}_labels.tif"


def _predict_one(model, src: Path, dst: Path, args, position: int = 0) -> None:
    from ..core.predict import predict_iter
    from ..io import write_labels

    # into a zarr store: uncompressed NIfTI/TIFF input is read a few slices at a time too
    volume = _read(src, streamed=dst.suffix.lower() == ".zarr")
    _check_segmentable(volume)
    if len(volume.series) > 1:
        used = volume.series[0]
        print(f"note: {src.name} holds {len(volume.series)} DICOM series; segmented "
              f"'{used.get('description') or used.get('uid')}' ({used.get('n_slices')} slices). "
              "To pick another, give one of its files as the input.", file=sys.stderr)
    from ..cohort import case_modality

    modality = case_modality(args.modality, volume)
    reviewed = (_load_reviewed(args, tuple(volume.data.shape), list(model.class_names))
                if args.reviewed else None)
    net, device = (_int8_network(model, volume, modality, args.device) if args.int8
                   else (model.net, args.device))
    if dst.suffix.lower() == ".zarr":
        return _predict_into_zarr(net, device, volume, dst, modality, args, position, model)
    work = predict_iter(net, volume.data, modality=modality, device=device,
                        batch_size=args.batch_size, precision=args.precision,
                        probabilities="uint8" if args.probabilities else None)
    result = _drive(work, f"segmenting {src.name}", position)
    if reviewed is not None:
        _merge_reviewed(result.labels, reviewed, list(model.class_names),
                        Path(args.reviewed).name)
    from .. import __version__

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


def _load_reviewed(args, shape: tuple[int, ...], class_names: list[str]):
    """Read and check ``--reviewed`` before any work: (labels, slices, --only-touching values)."""
    import numpy as np

    from ..core.finetune import annotated_slices

    reviewed = _read(args.reviewed)
    name = Path(args.reviewed).name
    if tuple(reviewed.data.shape) != tuple(shape):
        raise CliError(f"{name}: shape {tuple(reviewed.data.shape)} differs from the image's "
                       f"{tuple(shape)}")
    data = np.asarray(reviewed.data)
    if data.dtype.kind not in "iub":
        raise CliError(f"{name}: labels must be integers, not {data.dtype}")
    slices = _parse_slices(args.reviewed_slices)
    if slices is None:
        slices = annotated_slices(data)
    flat = data.reshape(-1, *shape[-2:])
    if any(not 0 <= k < len(flat) for k in slices):
        raise CliError(f"--reviewed-slices must lie between 0 and {len(flat) - 1}")
    if not slices:
        raise CliError(f"{name} holds no labelled slice; list the reviewed ones with "
                       "--reviewed-slices")
    unknown = [int(v) for v in np.unique(flat[slices]) if not 0 <= v < len(class_names)]
    if unknown:
        raise CliError(f"{name}: label value {unknown[0]} on a reviewed slice, but the model's "
                       f"classes are 0-{len(class_names) - 1} ({', '.join(class_names)})")
    classes = _class_values(args.only_touching, class_names) if args.only_touching else []
    if classes and len(shape) < 3:
        raise CliError("--only-touching needs a 3D volume: a 2D image has no neighbouring "
                       "slices")
    return flat, slices, classes


def _merge_reviewed(labels, reviewed, class_names: list[str], name: str) -> None:
    """Copy the reviewed slices into ``labels``, in place.

    Then keep only the objects of the ``--only-touching`` classes that touch a reviewed slice.
    """
    from ..core.objects import keep_anchored_objects

    flat, slices, classes = reviewed
    labels.reshape(-1, *labels.shape[-2:])[slices] = flat[slices]
    if classes:
        report = keep_anchored_objects(labels, slices, classes)
        print(f"note: {report.describe(class_names)}", file=sys.stderr)
    print(f"note: kept {len(slices)} reviewed slice(s) of {name}", file=sys.stderr)


def _class_values(text: str, class_names: list[str]) -> list[int]:
    """Label values of ``--only-touching``: class names, numbers, or 'all'."""
    if text.strip().lower() == "all":
        return list(range(1, len(class_names)))
    values = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        if item in class_names[1:]:
            values.append(class_names.index(item))
        elif item.isdigit() and 0 < int(item) < len(class_names):
            values.append(int(item))
        else:
            raise CliError(f"--only-touching: {item!r} is not a class of the model "
                           f"({', '.join(class_names[1:])})")
    return values


def _int8_network(model, volume, modality: str, device: str | None):
    """(network in int8 calibrated on slices of ``volume``, "cpu"), or a CliError."""
    from ..core.quantize import quantize_for_image

    if device not in (None, "auto", "cpu"):
        raise CliError(f"--int8 runs on the CPU only; leave out --device {device}")
    if model.net.config.arch != "unet":
        raise CliError(f"--int8 keeps the Dice of U-Net models only; '{model.metadata.get('name')}'"
                       f" is a {model.net.config.arch} model (BENCHMARKS.md, int8)")
    print(f"calibrating int8 on slices of {volume.path.name}...", file=sys.stderr, flush=True)
    return quantize_for_image(model.net, volume.data, modality=modality), "cpu"


def _predict_into_zarr(net, device: str | None, volume, dst: Path, modality: str, args,
                       position: int, model) -> None:
    """Segment straight into an OME-Zarr labels store: memory stays a few slices deep."""
    from ..core.predict import predict_iter
    from ..io.zarr_io import ZarrLabelsWriter

    if args.probabilities:
        raise CliError("--probabilities cannot be written beside a .zarr output; leave it out")
    writer = ZarrLabelsWriter(dst, tuple(volume.data.shape), volume.spacing,
                              list(model.class_names))
    try:
        work = predict_iter(net, volume.data, modality=modality, device=device,
                            batch_size=args.batch_size, out=writer.array,
                            precision=args.precision)
        _drive(work, f"segmenting {volume.path.name}", position)
        writer.commit()
    except BaseException:
        writer.abort()
        raise


def _write_probabilities(path: Path, probabilities) -> None:
    """Write (class, ...) uint8 probabilities as an ImageJ hyperstack TIFF, atomically."""
    import tifffile

    from ..io import atomic_write

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
    from ..core.paths import OutputPathError, check_output_path

    outputs = [dst] + ([Path(probabilities)] if probabilities else [])
    for out in outputs:
        if not out.parent.is_dir():
            raise CliError(f"{out}: the folder '{out.parent}' does not exist")
        try:
            check_output_path(out, [src, *inputs], folder_ok=out.suffix.lower() == ".zarr")
        except OutputPathError as exc:
            raise CliError(str(exc)) from None
    if probabilities and Path(probabilities).resolve() == dst.resolve():
        raise CliError(f"{dst}: the labels and --probabilities would be the same file")
    if probabilities and Path(probabilities).suffix.lower() not in (".tif", ".tiff"):
        raise CliError(f"{probabilities}: --probabilities writes a TIFF; give it a .tif name")


def cmd_predict(args) -> int:
    """Segment one image, or every case in a folder."""
    from ..io import is_supported
    from ..io.zarr_io import is_zarr

    src, dst = Path(args.input), Path(args.output)
    if not src.exists():
        raise CliError(f"{src}: no such file or folder")
    model = _load_model(args.model)
    cases = None
    if src.is_dir() and not is_zarr(src) and not _is_dicom_folder(src):
        cases = sorted(p for p in src.iterdir() if is_supported(p))
        if not cases:
            raise CliError(f"{src}: the folder holds no TIFF, NIfTI or DICOM images")
    if cases is None:
        if dst.is_dir() and dst.suffix.lower() != ".zarr":
            dst = _output_path(src, dst, args.format)
        elif args.format == "dicom-seg" and dst.suffix.lower() != ".dcm":
            raise CliError(f"{dst}: --format dicom-seg writes a .dcm file; name it so")
        _check_reviewed_options(args, dst)
        _check_outputs(src, dst, args.probabilities,
                       inputs=[Path(args.reviewed)] if args.reviewed else [])
        _predict_one(model, src, dst, args)
        print(f"wrote {dst}")
        return 0
    if args.probabilities:
        raise CliError("--probabilities works with a single input image, not a folder")
    if args.int8:
        raise CliError("--int8 works with a single input image, not a folder")
    if args.reviewed or args.only_touching or args.reviewed_slices:
        raise CliError("--reviewed works with a single input image, not a folder")
    return _predict_cohort(model, cases, dst, args)


def _check_reviewed_options(args, dst: Path) -> None:
    """Refuse, before any work, --reviewed options that cannot be honoured."""
    if not args.reviewed:
        if args.only_touching or args.reviewed_slices:
            raise CliError("--only-touching and --reviewed-slices need --reviewed LABELS")
        return
    if not Path(args.reviewed).exists():
        raise CliError(f"{args.reviewed}: no such file or folder")
    if dst.suffix.lower() == ".zarr":
        raise CliError("--reviewed needs the labels in memory; write a .nii.gz or .tif, "
                       "not a .zarr store")


def _predict_cohort(model, cases: list[Path], dst: Path, args) -> int:
    """Segment every case of a folder, serially or as Dask tasks (see napari_fcnseg.cohort)."""
    from tqdm import tqdm

    from ..cohort import CaseOptions, model_payload, segment_case, threads_per_worker

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
                          threads_per_worker(args.workers or 1) if distributed else None,
                          args.precision)
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
    from ..cohort import local_client, run_on_dask

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
