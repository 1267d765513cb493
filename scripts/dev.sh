#!/usr/bin/env bash
# Set up a development environment from a fresh clone and run the tests or the demo.
#
#   bash scripts/dev.sh test            # install everything, lint, validate the manifest, run pytest
#                                       # (the whole suite also: installed_check, compat_check)
#   bash scripts/dev.sh demo [ARGS...]  # install everything, open napari with the demo
#                                       # (ARGS e.g. --screenshot demo.png, for headless machines)
#
# Creates .venv/ in the repository. On Debian/Ubuntu run as root, it installs the Xvfb and Mesa
# GL packages that the GUI tests need; otherwise it prints what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:-test}
shift || true

GUI_PACKAGES="xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4
libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0
libxcb-xfixes0 libdbus-1-3 libfontconfig1"

need_display=0
if [ "$(uname -s)" = Linux ] && [ -z "${DISPLAY:-}" ]; then need_display=1; fi
if [ "$need_display" = 1 ] && ! command -v Xvfb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Xvfb and Mesa GL for the GUI (apt-get)"
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $GUI_PACKAGES >/dev/null
  else
    echo "This machine has no display and no Xvfb. Install (Debian/Ubuntu):" >&2
    echo "  sudo apt-get install $(echo $GUI_PACKAGES)" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# a CPU build of torch (an unpinned torch pulls a multi-GB CUDA build on Linux)
.venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e ".[testing]"

case "$action" in
  test)
    .venv/bin/ruff check napari_fcnseg tests tests_installed benchmarks scripts
    .venv/bin/npe2 validate napari-fcnseg --imports
    .venv/bin/lint-imports --no-cache  # the floors: imports only point down (pyproject.toml)
    .venv/bin/mypy  # the types ([tool.mypy] in pyproject.toml)
    export NAPARI_FCNSEG_MODEL_DIR="${NAPARI_FCNSEG_MODEL_DIR:-$(mktemp -d)}"
    .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
    if [ "$#" = 0 ]; then  # the whole suite: also check the plugin installed as users do,
      bash scripts/installed_check.sh
      bash scripts/compat_check.sh  # and on the oldest napari supported, with PySide6
    fi
    ;;
  demo)
    if [ "$need_display" = 1 ]; then
      exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/napari-fcnseg demo "$@"
    fi
    exec .venv/bin/napari-fcnseg demo "$@"
    ;;
  *)
    echo "usage: bash scripts/dev.sh test|demo [args]" >&2
    exit 2
    ;;
esac
