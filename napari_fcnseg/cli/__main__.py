"""``python -m napari_fcnseg.cli``."""

import sys

from napari_fcnseg.cli import main

sys.exit(main())
