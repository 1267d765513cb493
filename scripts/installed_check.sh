#!/usr/bin/env bash
# Install the plugin the way users do — a built wheel, non-editable, into a fresh venv with
# napari — and check it from outside the source tree: manifest, CLI, widgets docked by napari.
#
#   bash scripts/installed_check.sh        (run by `bash scripts/dev.sh test`)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

.venv/bin/python -m pip wheel -q --no-deps -w "$work/dist" . 2>&1 \
  | grep -v "^WARNING: Location" || true
wheel=$(ls "$work"/dist/napari_fcnseg-*.whl)
.venv/bin/python -c "import sys, zipfile; names = zipfile.ZipFile(sys.argv[1]).namelist(); \
sys.exit(0 if 'napari_fcnseg/core/weights/bundled.pt' in names else 'the wheel lacks the \
bundled weights')" "$wheel"

venv=${INSTALLED_VENV:-$root/.venv-installed}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
"$venv/bin/python" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}" 2>&1 \
  | grep -v "^WARNING: Location" || true
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$wheel" 2>&1 \
  | grep -v "^WARNING: Location" || true
"$venv/bin/python" -m pip install -q "$wheel" PyQt6 pytest pytest-qt pytest-xvfb 2>&1 \
  | grep -v "^WARNING: Location" || true

cd "$work"  # outside the source tree: only the installed package can be imported
"$venv/bin/npe2" validate napari-fcnseg --imports
export NAPARI_FCNSEG_MODEL_DIR="$work/models"
"$venv/bin/napari-fcnseg" predict "$root/sample_data/mr_abdomen.tif" "$work/mr_labels.tif"
"$venv/bin/python" -c "import tifffile, sys; a = tifffile.imread(sys.argv[1]); \
assert a.any(), 'empty labels'" "$work/mr_labels.tif"
cp "$root/tests_installed/test_installed.py" "$work/"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$work/test_installed.py"
echo "installed wheel: manifest, CLI and widgets OK"
