"""The fitted state of a TokenSparseClassifier: one list of attributes that fit, save and load share.

``fit`` ends in :func:`set_fitted`, and so does ``load``; :func:`fitted_to_json` and
:func:`fitted_from_json` are the one place that says how each JSON-able attribute is stored
(and what files written before an attribute existed hold in its place).
"""

from __future__ import annotations

import copy
import dataclasses
import os

import numpy as np

from .older_files import FITTED as OLDER_FITTED

#: Every fitted attribute; assigned together, only at the end of fit or load.
FITTED = (
    "classes_", "token_groups_", "added_tokens_", "strategy_", "mask_", "mask_summary_", "n_trainable_params_",
    "learning_rate_", "finetune_plan_", "history_", "pooling_", "interrupted_", "finetuned_", "interpolation_",
    "interpolation_scores_", "fit_time_", "fit_stages_", "multilabel_", "label_names_", "thresholds_",
    "unknown_threshold_", "rejector_", "module_", "tokenizer_", "device_",
)


def set_fitted(est, **values):
    """Assign every fitted attribute of ``est`` at once (an exception before this leaves it as it was)."""
    missing, unknown = set(FITTED) - set(values), set(values) - set(FITTED)
    if missing or unknown:
        raise TypeError(f"set_fitted needs exactly the fitted attributes (missing {sorted(missing)}, unknown {sorted(unknown)})")
    for name in FITTED:
        setattr(est, name, values[name])
    return est


# -- JSON of Python/numpy values ---------------------------------------------------------
def json_default(value):
    """``json.dumps(default=...)`` for the numpy and path values fitted attributes hold."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} cannot be saved as JSON")


def labels_to_json(labels):
    labels = np.asarray(labels)
    values = [json_default(v) if isinstance(v, np.generic) else v for v in labels.tolist()]
    for v in values:
        if not isinstance(v, (str, int, float, bool)):
            raise TypeError(
                f"class labels of type {type(v).__name__} cannot be saved safely; use str/int labels or pickle"
            )
    return {"dtype": "object" if labels.dtype == object else labels.dtype.str, "values": values}


def labels_from_json(obj):
    if obj["dtype"] == "object":
        out = np.empty(len(obj["values"]), dtype=object)
        out[:] = obj["values"]
        return out
    return np.asarray(obj["values"], dtype=np.dtype(obj["dtype"]))


def _label_from_json(value, classes):
    # A token group's label is one of classes_: give back that very object (numpy type included).
    for c in classes:
        if (json_default(c) if isinstance(c, np.generic) else c) == value:
            return c
    return value


def _groups_to_json(groups):
    return [dict(dataclasses.asdict(g), label=labels_to_json([g.label])["values"][0]) for g in groups]


def _groups_from_json(rows, obj):
    from ..text.tokens import TokenGroup

    classes = labels_from_json(obj["classes"])
    return [
        TokenGroup(**dict(g, token_ids=tuple(g["token_ids"]), pieces=tuple(g.get("pieces", ())),
                          label=_label_from_json(g["label"], classes)))
        for g in rows
    ]


def _added_to_json(added):
    from ..text.vocabulary import added_to_json

    return added_to_json(added)


def _added_from_json(rows, obj):
    from ..text.vocabulary import added_from_json

    return added_from_json(rows)


def _same(value, obj=None):
    return value


def _optional(convert, n_args=1):
    """``convert`` for a value that may be None (``n_args=2``: a decoder taking the whole object too)."""
    if n_args == 2:
        return lambda value, obj: None if value is None else convert(value)
    return lambda value: None if value is None else convert(value)


_MISSING = object()

# attribute -> (JSON key, to JSON, from JSON(value, whole object)); what a file written before a
# field existed means by its absence is in older_files.FITTED.
_CODEC = {
    "classes_": ("classes", labels_to_json, lambda v, obj: labels_from_json(v)),
    "token_groups_": ("token_groups", _groups_to_json, _groups_from_json),
    "added_tokens_": ("added_tokens", _added_to_json, _added_from_json),
    "strategy_": ("strategy", _same, _same),
    "mask_summary_": ("mask_summary", _same, _same),
    "n_trainable_params_": ("n_trainable_params", int, _same),
    "learning_rate_": ("learning_rate", float, _same),
    "finetune_plan_": ("finetune_plan", _same, _same),
    "history_": ("history", _same, _same),
    "pooling_": ("pooling", _same, _same),
    "interrupted_": ("interrupted", bool, _same),
    "finetuned_": ("finetuned", bool, _same),
    "interpolation_": ("interpolation", float, _same),
    # JSON keys are strings: the points travel as [a, accuracy, log-loss] rows.
    "interpolation_scores_": ("interpolation_scores", lambda d: [[a, *s] for a, s in d.items()],
                              lambda rows, obj: {row[0]: tuple(row[1:]) for row in rows}),
    "fit_time_": ("fit_time", float, _same),
    "fit_stages_": ("fit_stages", _same, _same),
    "multilabel_": ("multilabel", bool, _same),
    "label_names_": ("label_names", _same, _same),
    "thresholds_": ("thresholds", _optional(lambda v: [float(t) for t in v]), _optional(np.asarray, 2)),
    "unknown_threshold_": ("unknown_threshold", _optional(float), _same),
}


def fitted_to_json(est):
    """The JSON-able fitted attributes of ``est`` as one dict (what a model file stores)."""
    return {key: encode(getattr(est, attr)) for attr, (key, encode, _) in _CODEC.items()}


# JSON types of the scalar fields: what a file that a fit wrote holds there.
_SCALAR_TYPES = {int: (int,), float: (int, float), bool: (bool,)}


def fitted_from_json(obj):
    """``{attribute: value}`` from :func:`fitted_to_json`'s dict.

    KeyError names a missing field; TypeError a scalar field of the wrong JSON type.
    """
    out = {}
    for attr, (key, encode, decode) in _CODEC.items():
        default = OLDER_FITTED.get(attr, _MISSING)
        if key in obj:
            value = obj[key]
            types = _SCALAR_TYPES.get(encode)
            if types and (not isinstance(value, types) or (bool not in types and isinstance(value, bool))):
                raise TypeError(f"the fitted field {key!r} holds {value!r}, not a {encode.__name__}")
        elif default is _MISSING:
            raise KeyError(key)
        else:
            # A fresh copy per load: a mutable default ({} / []) is never shared between models.
            value = default(obj) if callable(default) else copy.deepcopy(default)
        out[attr] = decode(value, obj)
    return out
