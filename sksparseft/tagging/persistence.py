"""A tagger's model file: the classifier's safe format (safetensors, JSON, a digest; no code runs on load).

The file holds what the fit learned beyond the pretrained backbone, as
:func:`~sksparseft.io.persistence.module_tensors` gathers it for either estimator, plus the intent
head, and names the estimator that wrote it, so that neither estimator loads the other's file.
"""

from __future__ import annotations

import numpy as np
import torch

from ..io.fitted import _groups_from_json, _groups_to_json, labels_from_json, labels_to_json
from ..io.model_file import ModelFileError, json_object, tokenizer_files, tokenizer_from_files
from ..io.persistence import (_load_encoder, _rebuild_module, module_tensors, params_to_json, read_estimator_file,
                              rebuild_or_refuse, write_model_file)
from ..strategies import from_description
from .data import tag_scheme

ESTIMATOR = "TokenSparseTagger"
#: the fitted attributes a file stores as JSON (the module, tokenizer and device are rebuilt)
_JSON = ("tag_scheme_", "strategy_", "mask_summary_", "n_trainable_params_", "learning_rate_", "finetune_plan_",
         "history_", "interrupted_", "finetuned_", "interpolation_", "fit_time_", "fit_stages_")


def save_tagger(est, path, include_backbone=False):
    module = est.module_
    tensors, fitted, backbone = module_tensors(est.model, module, include_backbone)
    if module.intent_head is not None:
        tensors["intent_head.weight"], tensors["intent_head.bias"] = module.intent_head.weight, module.intent_head.bias
    fitted.update({name.rstrip("_"): getattr(est, name) for name in _JSON})
    fitted.update(
        tags=labels_to_json(est.tags_), intents=None if est.intents_ is None else labels_to_json(est.intents_),
        token_groups=_groups_to_json(est.token_groups_),
        interpolation_scores=[[a, *s] for a, s in est.interpolation_scores_.items()],
        mask_shapes=est.mask_.shapes if est.mask_ is not None else None)
    return write_model_file(path, tensors, {"estimator": ESTIMATOR, "params": params_to_json(est), "fitted": fitted,
                                            "tokenizer": tokenizer_files(est.tokenizer_), "backbone": backbone})


def load_tagger(cls, path, device=None):
    """Rebuild a fitted tagger from ``path``; anything that does not fit together is a ModelFileError."""
    metadata, tensors = read_estimator_file(path, ESTIMATOR)
    return rebuild_or_refuse(path, lambda: _rebuild(cls, path, metadata, tensors, device))


def _rebuild(cls, path, metadata, tensors, device):
    from ..model.devices import resolve_device
    from .estimator import set_fitted
    from .module import TaggerModule

    params = json_object(path, metadata, "params")
    fitted = json_object(path, metadata, "fitted")
    backbone = json_object(path, metadata, "backbone")
    est = cls(**params)
    est._validate_params()
    tags = labels_from_json(fitted["tags"])
    intents = None if fitted["intents"] is None else labels_from_json(fitted["intents"])
    if tags.ndim != 1 or not len(tags) or (intents is not None and (intents.ndim != 1 or not len(intents))):
        raise ModelFileError(f"{path}: tags (and intents) must be non-empty lists")
    if not all(isinstance(t, str) for t in tags.tolist()) or len(set(tags.tolist())) != len(tags) or \
            (intents is not None and len(set(intents.tolist())) != len(intents)):
        raise ModelFileError(f"{path}: tags must be distinct strings, and intents distinct")
    if fitted["tag_scheme"] != tag_scheme([tags.tolist()]):
        raise ModelFileError(f"{path}: the tag scheme {fitted['tag_scheme']!r} does not fit the tags")
    rows = fitted["interpolation_scores"]
    if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == 3 and
                                             all(isinstance(v, (int, float)) for v in r) for r in rows):
        raise ModelFileError(f"{path}: interpolation_scores must be [blend, score, loss] rows")
    if not isinstance(fitted["history"], list) or not all(isinstance(r, dict) for r in fitted["history"]):
        raise ModelFileError(f"{path}: history must be a list of objects")
    tokenizer = tokenizer_from_files(path, json_object(path, metadata, "tokenizer"))
    encoder = _load_encoder(path, backbone, fitted, [], tokenizer)
    strategy = fitted["strategy"]
    from_description(strategy)  # an unknown strategy or option fails here, by name
    module = TaggerModule(encoder, len(tags), 0 if intents is None else len(intents), dropout=fitted["dropout_module"])
    intent = {k: tensors.pop(k) for k in ("intent_head.weight", "intent_head.bias") if k in tensors}
    if (module.intent_head is None) != (not intent):
        raise ModelFileError(f"{path}: the intent head does not fit the intents")
    for key, t in intent.items():
        like = getattr(module.intent_head, key.split(".")[1])
        if tuple(t.shape) != tuple(like.shape) or t.dtype != like.dtype:
            raise ModelFileError(f"{path}: tensor {key} does not fit {len(intents)} intents")
        with torch.no_grad():
            like.copy_(t)
    module, mask = _rebuild_module(path, encoder, fitted, {"classes_": tags, "strategy_": strategy}, tensors,
                                   backbone["included"], module=module)
    dev = resolve_device(device if device is not None else est.device)
    module.to(dev).eval()
    values = {name: fitted[name.rstrip("_")] for name in _JSON}
    values.update(tags_=tags, intents_=intents,
                  token_groups_=_groups_from_json(fitted["token_groups"], {"classes": fitted["tags"]}),
                  interpolation_scores_={row[0]: tuple(row[1:]) for row in fitted["interpolation_scores"]},
                  mask_=mask, module_=module, tokenizer_=tokenizer, device_=dev)
    est = set_fitted(est, values)
    proba = est.predict_proba([["a", "model", "file", "check"]])  # what loads must predict
    if proba[0].shape != (4, len(tags)) or not np.isfinite(proba[0]).all():
        raise ModelFileError(f"{path}: the rebuilt tagger does not give one finite probability per word and tag")
    return est
