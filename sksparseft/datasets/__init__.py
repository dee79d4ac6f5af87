"""Datasets bundled with sksparseft, or read from their own packages, loaded in the scikit-learn style."""

from ._atis import load_atis
from ._banking77 import load_banking77

__all__ = ["load_atis", "load_banking77"]
