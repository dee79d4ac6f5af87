"""BANKING77 (Casanueva et al., 2020), shipped inside the package under CC BY 4.0."""

from __future__ import annotations

import csv
import gzip
import io
import json
from importlib import resources

import numpy as np
from sklearn.utils import Bunch

_SPLITS = ("train", "test")

DESCR = """\
BANKING77 intent detection dataset
----------------------------------
13,083 customer-service queries in the online-banking domain, labelled with
77 fine-grained intents (train: 10,003, test: 3,080).

Source: Casanueva, I., Temcinas, T., Gerz, D., Henderson, M., Vulic, I. (2020).
"Efficient Intent Detection with Dual Sentence Encoders". Proceedings of the 2nd
Workshop on NLP for ConvAI (ACL 2020). https://arxiv.org/abs/2003.04807
Licence: Creative Commons Attribution 4.0 International (CC BY 4.0); the licence
text ships with this package (see ``licence_path`` of the returned Bunch).
"""


def _data_dir():
    return resources.files("sksparseft.datasets").joinpath("data", "banking77")


def load_banking77(split="train", *, return_X_y=False, classes=None, n_per_class=None, random_state=None):
    """Load a split of the BANKING77 intent-detection dataset (bundled, offline).

    Parameters
    ----------
    split : {"train", "test"}, default="train"
        The official split to load.
    return_X_y : bool, default=False
        If True, return ``(texts, labels)`` instead of a Bunch.
    classes : list of str or None, default=None
        Keep only the texts of these intents.
    n_per_class : int or None, default=None
        Draw this many texts of each intent (of ``classes``, in their order; all 77 when
        None) without replacement, for few-shot experiments; None keeps every text.
    random_state : int, numpy Generator or None, default=None
        Seeds the draw of ``n_per_class``.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` (list of str), ``target`` (ndarray of str intent names),
        ``target_names`` (the 77 intents in the dataset's order), ``DESCR`` and
        ``licence_path``.
    (texts, labels) : tuple
        If ``return_X_y`` is True.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    root = _data_dir()
    with gzip.open(io.BytesIO(root.joinpath(f"{split}.csv.gz").read_bytes()), "rt", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    texts = [row["text"] for row in rows]
    labels = np.asarray([row["category"] for row in rows], dtype=object)
    if classes is not None or n_per_class is not None:
        texts, labels = _subset(texts, labels, classes, n_per_class, random_state)
    if return_X_y:
        return texts, labels
    target_names = json.loads(root.joinpath("categories.json").read_text(encoding="utf-8"))
    return Bunch(
        data=texts,
        target=labels,
        target_names=list(target_names),
        DESCR=DESCR,
        licence_path=str(root.joinpath("LICENSE")),
    )


def _subset(texts, labels, classes, n_per_class, random_state):
    known = sorted(set(labels))
    classes = known if classes is None else list(classes)
    unknown = sorted(set(classes) - set(known))
    if unknown:
        raise ValueError(f"classes {unknown[:3]} are not BANKING77 intents")
    if n_per_class is None:
        rows = np.flatnonzero(np.isin(labels, classes))
    else:
        rng = np.random.default_rng(random_state)
        rows = np.concatenate([rng.choice(np.flatnonzero(labels == c), n_per_class, replace=False) for c in classes])
    return [texts[i] for i in rows], labels[rows]
