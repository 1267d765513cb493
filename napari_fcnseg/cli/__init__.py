"""Command line: ``napari-fcnseg predict | finetune | evaluate | models | demo``.

Errors print one plain line on stderr and exit non-zero (add ``--debug`` for the traceback).
Outputs are written atomically at the end, so a failed or interrupted run leaves no partial file.
Each command lives in its own module; this one builds the parser and runs it.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

from ._common import EXIT_ERROR, EXIT_INTERRUPTED, CliError
from .models import cmd_demo, cmd_models
from .predict import cmd_predict
from .train import cmd_evaluate, cmd_finetune

__all__ = ["CORRECTION_STEPS", "EXIT_ERROR", "EXIT_INTERRUPTED", "NEW_CLASS_STEPS", "CliError",
           "build_parser", "main"]

# FinetuneSettings defaults, not imported, to keep --help free of torch (a test checks them)
CORRECTION_STEPS, CORRECTION_LR = 100, 1e-3
NEW_CLASS_STEPS, NEW_CLASS_LR = 300, 1e-2
FROM_SCRATCH_STEPS = 600


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
    p.add_argument("--model", help="model name in the store (bundled: the U-Net, fcn: the "
                   "plain FCN, or one you fine-tuned), or an exported model file")
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
    p.add_argument("--precision", choices=["float32", "float16", "bfloat16"],
                   default="float32", help="network arithmetic: float16/bfloat16 (autocast) "
                   "for GPUs, and bfloat16 for CPUs with native bfloat16 (about 1.5x faster "
                   "there, Dice within 0.001); float32 (default) everywhere")
    p.add_argument("--int8", action="store_true",
                   help="one image, CPU, U-Net models: run the network in int8, calibrated on "
                   "8 slices of the image (about 13 s; 1.6-2x faster per slice, Dice within "
                   "0.002 of float32 in BENCHMARKS.md)")
    p.add_argument("--reviewed", metavar="LABELS",
                   help="one image: a label file whose reviewed slices are copied into the "
                   "output unchanged instead of predicted (the slices a person corrected)")
    p.add_argument("--reviewed-slices", metavar="SLICES",
                   help="with --reviewed: which slices, e.g. 3,10,42 (default: its non-empty "
                   "ones; list reviewed all-background slices here)")
    p.add_argument("--only-touching", metavar="CLASSES",
                   help="with --reviewed: of these classes (names or values, comma-separated, "
                   "or 'all') keep only the objects that touch the same class on a reviewed "
                   "slice in 3D, e.g. the one tumour corrected; other spots become background")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("finetune", help="fine-tune a model on annotated slices")
    p.add_argument("--image", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--slices", help="annotated slices, e.g. 3,10,42 (default: non-empty ones)")
    p.add_argument("--base", help="starting model, e.g. bundled (U-Net) or fcn (plain FCN); "
                   "default: the store's default")
    p.add_argument("--from-scratch", action="store_true",
                   help="start from an untrained network instead of a model (for a label set "
                   "unlike anything shipped; needs more annotated slices and steps)")
    p.add_argument("--arch", choices=["unet", "fcn"], default=None,
                   help="architecture of the untrained network with --from-scratch "
                   "(default: unet)")
    p.add_argument("--name", required=True, help="name of the new model")
    p.add_argument("--classes", help="class names, background first, e.g. "
                   "background,liver,tumour (default: the base model's, then 'class N')")
    p.add_argument("--ignore-label", type=int, default=None, metavar="VALUE",
                   help="label value of pixels nobody annotated (partial labels, scribbles): "
                   "they are left out of training; 0 is then an explicit background stroke")
    p.add_argument("--no-heldout", action="store_true",
                   help="skip the held-out Dice estimate (about four times faster)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"optimiser steps (default: {NEW_CLASS_STEPS} when the labels add "
                   f"classes the model does not know, else {CORRECTION_STEPS}; "
                   f"{FROM_SCRATCH_STEPS} with --from-scratch)")
    p.add_argument("--lr", type=float, default=None,
                   help=f"peak learning rate (default: {NEW_CLASS_LR:g} when the labels add "
                   f"classes the model does not know, else {CORRECTION_LR:g}; 3e-3 with "
                   "--from-scratch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="training precision (default auto: bfloat16 on CPUs that compute it "
                        "natively, a round about a fifth faster; float32 elsewhere)")
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

