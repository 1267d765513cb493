#!/usr/bin/env bash
# The other end of the support range: the oldest napari this package supports (the floor in
# pyproject.toml), with PySide6 instead of PyQt6, running every GUI test (`-m gui`: all of
# tests/widgets and the GUI cases elsewhere). README "Supported napari and Qt" says why these.
#
#   bash scripts/compat_check.sh [PYTEST ARGS]     (run by `bash scripts/dev.sh test`)
#
# Builds .venv-compat/ and reuses it while the pins below stay the same (pip's cache makes a
# fresh one quick). Other pins: COMPAT_NAPARI="napari==0.6.3" COMPAT_QT="PySide6-Essentials==6.9.3".
set -euo pipefail
cd "$(dirname "$0")/.."
napari_spec=${COMPAT_NAPARI:-napari==0.5.1}
qt_spec=${COMPAT_QT:-PySide6-Essentials==6.8.3}
torch_spec=${TORCH_SPEC:-torch==2.13.0}
venv=${COMPAT_VENV:-.venv-compat}
start=$SECONDS

pip_install() {  # quiet, but the whole log when pip fails
  local log
  log=$(mktemp)
  if ! "$venv/bin/python" -m pip install -q "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

stamp="$napari_spec $qt_spec $torch_spec"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.compat-spec" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  pip_install --upgrade pip
  pip_install "$torch_spec"  # the CPU build, as in scripts/dev.sh
fi
# the package's test dependencies but its Qt binding (PyQt6) and the lint/build tools
test_deps=()
while IFS= read -r dep; do test_deps+=("$dep"); done < <("$venv/bin/python" -c '
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["testing"]
skip = {"pyqt6", "ruff", "import-linter", "build"}
print("\n".join(d for d in deps if re.split(r"[\s<>=!~\[;]", d)[0].lower() not in skip))')
pip_install "$napari_spec" "$qt_spec" "${test_deps[@]}" -e .
echo "$stamp" >"$venv/.compat-spec"
echo "compat: $venv ready in $((SECONDS - start)) s"

export QT_API=pyside6 PYTEST_QT_API=pyside6
"$venv/bin/python" - <<'EOF'
import importlib.util, napari, qtpy
assert qtpy.API_NAME == "PySide6", qtpy.API_NAME
assert importlib.util.find_spec("PyQt6") is None, "PyQt6 is installed: the check must not use it"
print(f"compat: napari {napari.__version__}, {qtpy.API_NAME} {qtpy.PYSIDE_VERSION} (Qt {qtpy.QT_VERSION})")
EOF
export NAPARI_FCNSEG_MODEL_DIR="${NAPARI_FCNSEG_MODEL_DIR:-$(mktemp -d)}"
"$venv/bin/python" -m pytest -q -p no:cacheprovider -m gui tests "$@"
echo "compat: GUI tests on $napari_spec with $qt_spec passed in $((SECONDS - start)) s"
