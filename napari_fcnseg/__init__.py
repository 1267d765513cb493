"""napari-fcnseg: segment CT/MR volumes with a fully-convolutional network and fine-tune it.

Importing the package is cheap: torch, Qt and napari are imported only by the modules
that use them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
