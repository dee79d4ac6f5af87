"""Datasets bundled with sksparseft, loaded in the scikit-learn style."""

from ._banking77 import load_banking77

__all__ = ["load_banking77"]
