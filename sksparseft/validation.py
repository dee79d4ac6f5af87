"""What fit and predict accept: texts, labels, class weights, and the held-out split."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

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
    """``y`` as a 1-D label array of ``n`` entries (strings stay objects, numbers keep their dtype),
    or a 2-D 0/1 indicator array ``(n, n_labels)`` for multi-label targets."""
    if y is None:
        raise ValueError("y is required: the class label of every text")
    if getattr(y, "ndim", None) == 2 and y.shape[1] > 1:
        return _validate_indicator(y, n)
    y_obj = np.asarray(y, dtype=object)
    if y_obj.ndim == 2 and y_obj.shape[1] == 1:
        y_obj = y_obj[:, 0]
    if y_obj.ndim != 1:
        raise ValueError(f"y must be one-dimensional (or a 2-D 0/1 indicator for multi-label), got shape {y_obj.shape}")
    if len(y_obj) != n:
        raise ValueError(f"X and y have different lengths: {n} texts, {len(y_obj)} labels")
    for i, v in enumerate(y_obj):
        if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)):
            raise ValueError(f"y[{i}] is missing ({v!r}); every text needs a label")
    if len({isinstance(v, str) for v in y_obj}) > 1:
        raise TypeError("y mixes strings and other types; use one label type")
    if all(isinstance(v, str) for v in y_obj):
        y = y_obj
    else:
        y_arr = np.asarray(y)
        y_arr = y_arr[:, 0] if y_arr.ndim == 2 else y_arr
        # Numbers keep their own dtype (int32 labels come back from predict as int32).
        y = y_arr if y_arr.dtype.kind in "biuf" else np.asarray(y_obj.tolist())
    check_classification_targets(y)
    return y


def _validate_indicator(y, n):
    """A multi-label target: a 2-D array of 0/1 with a column per label."""
    names = label_names(y)
    arr = np.asarray(y)
    if len(arr) != n:
        raise ValueError(f"X and y have different lengths: {n} texts, {len(arr)} label rows")
    try:
        values = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError("a 2-D y must be a 0/1 indicator array (n_samples, n_labels) for multi-label "
                         "classification; its entries are not numbers") from None
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError("a 2-D y must be a 0/1 indicator array (n_samples, n_labels) for multi-label "
                         "classification; it holds other values")
    for j, col in enumerate(values.T):
        if col.all() or not col.any():
            name = f" ({names[j]!r})" if names else ""
            state = "all one" if col.all() else "all zero"
            raise ValueError(f"y column {j}{name} is {state}: every label needs texts with and without it")
    return values.astype(arr.dtype if arr.dtype.kind in "biu" else np.int64)


def validate_labelled(X, y):
    """``(texts, y, classes, y_enc)`` for fit: at least two texts of two classes.

    For a 2-D indicator ``y`` (multi-label), ``classes`` is ``arange(n_labels)`` as in
    scikit-learn and ``y_enc`` the indicator itself.
    """
    texts = validate_texts(X)
    if not texts:
        raise ValueError("X is empty: at least two texts of two classes are needed")
    y = validate_y(y, len(texts))
    if y.ndim == 2:
        return texts, y, np.arange(y.shape[1]), y
    classes, y_enc = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"y has a single class ({classes[0]!r}); a classifier needs at least two")
    return texts, y, classes, y_enc


def validate_sample_weight(sample_weight, n):
    """``sample_weight`` as a float64 array of ``n`` non-negative weights, not all zero (None stays None)."""
    if sample_weight is None:
        return None
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError("sample_weight must be an array of numbers") from None
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.ndim != 1:
        raise ValueError(f"sample_weight must be one-dimensional, got shape {w.shape}")
    if len(w) != n:
        raise ValueError(f"sample_weight has {len(w)} entries for {n} texts")
    if not np.isfinite(w).all():
        i = int(np.flatnonzero(~np.isfinite(w))[0])
        raise ValueError(f"sample_weight[{i}] is {w[i]}; weights must be finite numbers")
    if (w < 0).any():
        i = int(np.flatnonzero(w < 0)[0])
        raise ValueError(f"sample_weight[{i}] is negative ({w[i]}); weights must be >= 0")
    if not w.any():
        raise ValueError("sample_weight is zero for every text; at least one text must count")
    return w


def class_weights(class_weight, classes, y):
    """Per-class loss weights in the order of ``classes`` (None: unweighted)."""
    if class_weight is None:
        return None
    if np.ndim(y) == 2:
        raise ValueError("class_weight applies to one label per text; for a multi-label y, weight texts "
                         "with fit(..., sample_weight=...)")
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
    if np.ndim(y_enc) == 2:  # multi-label: a plain random split
        train_idx, valid_idx = train_test_split(idx, test_size=n_valid, random_state=seed if seed is not None else 0)
        return np.sort(train_idx), np.sort(valid_idx)
    counts = np.bincount(y_enc)
    stratify = y_enc if counts.min() >= 2 and n_valid >= len(counts) and n - n_valid >= len(counts) else None
    train_idx, valid_idx = train_test_split(idx, test_size=n_valid, stratify=stratify, random_state=seed if seed is not None else 0)
    return np.sort(train_idx), np.sort(valid_idx)


def label_names(y):
    """The label names of a multi-label ``y`` given as a pandas DataFrame (its columns), else None."""
    columns = getattr(y, "columns", None)
    if columns is None or getattr(y, "ndim", 1) != 2 or len(columns) < 2:
        return None
    return [str(c) for c in columns]


def check_unknown_label(unknown_label, y):
    """``unknown_label`` must be a label of ``y``'s kind: a str among str labels, a number among numbers."""
    if isinstance(y, np.ndarray) and y.dtype == object:
        ok = isinstance(unknown_label, str)
    else:
        ok = isinstance(unknown_label, (Integral, Real)) and not isinstance(unknown_label, str)
        if ok and np.asarray(y).dtype.kind in "biu" and float(unknown_label) != int(unknown_label):
            ok = False
    if not ok:
        kind = "strings" if isinstance(y, np.ndarray) and y.dtype == object else f"numbers ({np.asarray(y).dtype})"
        raise TypeError(f"unknown_label={unknown_label!r} cannot be mixed with the labels of y, which are {kind}")


def drop_unweighted(X, y, sample_weight):
    """Texts of weight 0 are left out of the fit altogether (as if they were not given)."""
    if sample_weight is None:
        return X, y, None
    texts = validate_texts(X)
    weights = validate_sample_weight(sample_weight, len(texts))
    keep = np.flatnonzero(weights > 0)
    if len(keep) == len(texts) or y is None or len(y) != len(texts):
        return texts, y, weights  # nothing to drop, or validate_labelled names the problem with y
    rows = y.iloc if hasattr(y, "iloc") else y if isinstance(y, np.ndarray) else np.asarray(y, dtype=object)
    return [texts[i] for i in keep], rows[keep], weights[keep]
