#!/usr/bin/env bash
# Install the plugin the way users do — a built wheel, non-editable, into a fresh venv with
# napari — and check it from outside the source tree: manifest, CLI, widgets docked by napari.
# First the archives themselves: the sdist carries the tests and sample data, both it and the
# wheel every model file (scripts/check_dist.py).
#
#   bash scripts/installed_check.sh        (run by `bash scripts/dev.sh test`)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# the sdist, then the wheel built from it (as pip does from PyPI's source archive), each in an
# isolated build environment (the venv's own setuptools may be too old)
if ! .venv/bin/python -m build -o "$work/dist" . >"$work/build.log" 2>&1; then
  cat "$work/build.log" >&2
  exit 1
fi
sdist=$(ls "$work"/dist/napari_fcnseg-*.tar.gz)
wheel=$(ls "$work"/dist/napari_fcnseg-*.whl)
.venv/bin/python scripts/check_dist.py "$sdist" "$wheel"  # tests, samples, every weights file

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
