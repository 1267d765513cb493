"""The lower floors never pull in a GUI: core, io and the command line load without Qt or napari.

Each check runs in a fresh interpreter, so what this test session already imported (napari,
Qt through pytest-qt) cannot hide an import.
"""

import json
import os
import subprocess
import sys

import pytest

GUI = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "vispy", "magicgui", "superqt")

# Imports every module named in sys.argv (a package with all its submodules), runs CODE, then
# prints the GUI packages and this plugin's modules now loaded.
PROBE = """
import importlib, json, pkgutil, sys
for root in sys.argv[1:]:
    package = importlib.import_module(root)
    for info in pkgutil.walk_packages(getattr(package, "__path__", []), root + "."):
        if info.name.rsplit(".", 1)[-1] != "__main__":  # `python -m` scripts run on import
            importlib.import_module(info.name)
CODE
gui = sorted({m.split(".")[0] for m in sys.modules} & set(GUI))
ours = sorted(m for m in sys.modules if m.startswith("napari_fcnseg"))
print(json.dumps({"gui": gui, "ours": ours}))
"""


def _loaded(packages, code="", cwd=None, env=None):
    script = PROBE.replace("CODE", code).replace("set(GUI)", repr(set(GUI)))
    result = subprocess.run(
        [sys.executable, "-c", script, *packages],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _submodules(package):
    """The modules under ``package`` as found on disk, without importing them."""
    import importlib.util
    import pkgutil

    spec = importlib.util.find_spec(package)
    found = {package}
    for info in pkgutil.walk_packages(spec.submodule_search_locations, package + "."):
        if info.name.rsplit(".", 1)[-1] != "__main__":
            found.add(info.name)
    return found


def test_core_and_io_load_no_gui():
    loaded = _loaded(["napari_fcnseg.core", "napari_fcnseg.io"])
    assert loaded["gui"] == []
    for package in ("napari_fcnseg.core", "napari_fcnseg.io"):
        missing = _submodules(package) - set(loaded["ours"])
        assert not missing, f"not imported, so not checked: {sorted(missing)}"
    assert {"napari_fcnseg.core.store", "napari_fcnseg.io.dicom"} <= set(loaded["ours"])


def test_the_command_line_loads_no_gui():
    loaded = _loaded(["napari_fcnseg.cli", "napari_fcnseg.cohort"])
    assert loaded["gui"] == []
    assert _submodules("napari_fcnseg.cli") <= set(loaded["ours"])
    assert "napari_fcnseg.widgets" not in loaded["ours"]


@pytest.mark.parametrize(
    "args",
    [["models", "list"], ["predict", "in.tif", "out.tif"]],
    ids=["models", "predict"],
)
def test_running_a_command_loads_no_gui(tmp_path, args):
    """Not only importing: the commands' own deferred imports stay below the GUI too."""
    env = {
        **os.environ,
        "NAPARI_FCNSEG_MODEL_DIR": str(tmp_path / "models"),
        "NAPARI_FCNSEG_THREADS": "1",
    }
    code = (
        "from napari_fcnseg.core.phantoms import generate_volume\n"
        "from napari_fcnseg.io import write_image\n"
        "write_image('in.tif', generate_volume('CT', (4, 32, 32), 1).image)\n"
        "from napari_fcnseg.cli import main\n"
        f"assert main({args!r}) == 0\n"
    )
    loaded = _loaded([], code, cwd=tmp_path, env=env)
    assert loaded["gui"] == []
    assert "napari_fcnseg.cli" in loaded["ours"]
    if args[0] == "predict":
        assert (tmp_path / "out.tif").is_file()
        assert "napari_fcnseg.core.predict" in loaded["ours"]
