"""``napari-fcnseg models`` (manage the store) and ``demo``."""

from __future__ import annotations

from ._common import CliError


def cmd_models(args) -> int:
    """List, delete, export, import or reset models in the store."""
    from ..core.store import ModelStore

    store = ModelStore()
    if args.action == "list":
        default = store.default()
        for info in store.list():
            mark = "*" if info.name == default else " "
            missing = "" if info.available else " (weights missing)"
            print(f"{mark} {info.name:<24} {info.summary()}{missing}")
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
    from ..demo import run_demo

    return run_demo(screenshot=args.screenshot, modality=args.modality)
