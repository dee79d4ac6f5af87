"""What fit and predict accept: texts, labels, class weights, and the held-out split."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets


def validate_texts(X, name="X"):
    """``X`` as a list of str, or a TypeError/ValueError that names the bad entry."""
    if X is None:
        raise TypeError(f"{name} must be an iterable of strings, got None")
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name} must be an iterable of strings, got a single {type(X).__name__}; wrap it in a list")
    ndim = getattr(X, "ndim", 1)
    if ndim == 2 and X.shape[1] == 1:  # a single column of texts
        X = X[:, 0] if isinstance(X, np.ndarray) else X.iloc[:, 0]
    elif ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one text per row), got shape {X.shape}")
    try:
        texts = list(X)
    except TypeError:
        raise TypeError(f"{name} must be an iterable of strings, got {type(X).__name__}") from None
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            if t is None or (isinstance(t, float) and np.isnan(t)):
                raise ValueError(f"{name}[{i}] is missing ({t!r}); drop or fill missing texts before fitting")
            raise TypeError(f"{name}[{i}] is a {type(t).__name__}, not a str: {t!r:.60}")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            # Lone surrogates cannot reach the tokenizer: replace them (documented).
            texts[i] = t.encode("utf-8", "replace").decode("utf-8")
    return texts


def validate_y(y, n):
    """``y`` as a 1-D label array of ``n`` entries (strings stay objects, numbers keep their dtype)."""
    if y is None:
        raise ValueError("y is required: the class label of every text")
    y_obj = np.asarray(y, dtype=object)
    if y_obj.ndim == 2 and y_obj.shape[1] == 1:
        y_obj = y_obj[:, 0]
    if y_obj.ndim != 1:
        raise ValueError(f"y must be one-dimensional, got shape {y_obj.shape}")
    if len(y_obj) != n:
        raise ValueError(f"X and y have different lengths: {n} texts, {len(y_obj)} labels")
    for i, v in enumerate(y_obj):
        if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)):
            raise ValueError(f"y[{i}] is missing ({v!r}); every text needs a label")
    if len({isinstance(v, str) for v in y_obj}) > 1:
        raise TypeError("y mixes strings and other types; use one label type")
    y = y_obj if all(isinstance(v, str) for v in y_obj) else np.asarray(y_obj.tolist())
    check_classification_targets(y)
    return y


def validate_labelled(X, y):
    """``(texts, y, classes, y_enc)`` for fit: at least two texts of two classes."""
    texts = validate_texts(X)
    if not texts:
        raise ValueError("X is empty: at least two texts of two classes are needed")
    y = validate_y(y, len(texts))
    classes, y_enc = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"y has a single class ({classes[0]!r}); a classifier needs at least two")
    return texts, y, classes, y_enc


def class_weights(class_weight, classes, y):
    """Per-class loss weights in the order of ``classes`` (None: unweighted)."""
    if class_weight is None:
        return None
    if isinstance(class_weight, dict):
        unknown = set(class_weight) - set(classes.tolist())
        if unknown:
            raise ValueError(f"class_weight names classes not in y: {sorted(map(str, unknown))}")
    return compute_class_weight(class_weight, classes=classes, y=y)


def validation_split(y_enc, fraction, seed):
    """Sorted ``(train_idx, valid_idx)``; ``valid_idx`` is None when there is no held-out split."""
    n = len(y_enc)
    idx = np.arange(n)
    n_valid = int(np.ceil(fraction * n)) if fraction else 0
    if n_valid == 0 or n - n_valid < 2:
        if fraction:
            warnings.warn(f"{n} texts are too few for validation_fraction={fraction}; training without early stopping", stacklevel=5)
        return idx, None
    counts = np.bincount(y_enc)
    stratify = y_enc if counts.min() >= 2 and n_valid >= len(counts) and n - n_valid >= len(counts) else None
    train_idx, valid_idx = train_test_split(idx, test_size=n_valid, stratify=stratify, random_state=seed if seed is not None else 0)
    return np.sort(train_idx), np.sort(valid_idx)
