"""sksparseft: token-driven sparse finetuning of small language models, as a scikit-learn classifier."""

from .estimator import TokenSparseClassifier
from .tagging import TokenSparseTagger
from .text.tokens import TokenGroup
from . import _moved

_moved.install()

__version__ = "0.10.0"

__all__ = ["TokenSparseClassifier", "TokenSparseTagger", "TokenGroup", "__version__"]
