"""Safe persistence: one safetensors file, JSON metadata, nothing executed on load.

The file holds what ``fit`` learned relative to the pretrained backbone: the head, the
sparse delta (flat indices + values per tensor), tensors trained whole, adapters; plus, as
JSON in the safetensors header, the parameters, classes, token groups, mask layout, history,
tokenizer files, format and library versions, and a SHA-256 digest of all of it. The
backbone itself is re-read from ``model`` on load (checked against a fingerprint) unless it
was saved inside the file (``include_backbone=True``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..model.backbone import POOLINGS
from ..model.sparse_delta import with_delta
from ..atomic import atomic_write
from .model_file import (FORMAT, FORMAT_VERSION, ModelFileError, backbone_fingerprint, check_tensors, check_tokenizer,
                         digest, dumps, json_object, read_file, tokenizer_files, tokenizer_from_files, versions)
from .older_files import REJECTOR, describe_moved, moved_params, with_older_params
from .fitted import fitted_from_json, fitted_to_json, json_default, set_fitted
from ..strategies import from_description
from ..text.vocabulary import extend_embeddings

# -- parameters ------------------------------------------------------------------------
def params_to_json(est):
    params = est.get_params(deep=False)
    out = {}
    for k, v in params.items():
        if k == "callbacks" and v:
            warnings.warn("the callbacks parameter is not saved (callbacks are code); the loaded model has callbacks=None", stacklevel=3)
            v = None
        if k == "memory":
            v = None  # where fits kept frozen outputs: a resource of this machine, not part of the model
        if k == "class_weight" and isinstance(v, dict):
            v = {"__pairs__": [[json_default(a) if isinstance(a, np.generic) else a, float(b)] for a, b in v.items()]}
        out[k] = v
    return out


def params_from_json(params):
    params = with_older_params(params)
    cw = params.get("class_weight")
    if isinstance(cw, dict) and "__pairs__" in cw:
        params["class_weight"] = {a: b for a, b in cw["__pairs__"]}
    return params


# -- save ------------------------------------------------------------------------------
def save_estimator(est, path, include_backbone=False):
    """Write a fitted estimator to ``path`` atomically (see module docstring)."""
    tensors, fitted, backbone = module_tensors(est.model, est.module_, include_backbone,
                                               getattr(est, "added_tokens_", []))
    rejector = getattr(est, "rejector_", None)
    if rejector is not None:
        tensors["rejector.head.weight"], tensors["rejector.head.bias"] = rejector.head.weight, rejector.head.bias
        if include_backbone:  # otherwise the rejector's backbone is the one re-read from ``model``
            for name, p in rejector.encoder.state_dict().items():
                tensors[f"rejector.backbone.{name}"] = p
    fitted = {**fitted_to_json(est), **fitted, "mask_shapes": est.mask_.shapes if est.mask_ is not None else None,
              "rejector": rejector is not None}
    return write_model_file(path, tensors, {"params": params_to_json(est), "fitted": fitted,
                                            "tokenizer": tokenizer_files(est.tokenizer_), "backbone": backbone})


def module_tensors(model, module, include_backbone, added=()):
    """``(tensors, fitted fields, backbone field)`` of what a fitted module learned beyond its backbone.

    The head, the delta (flat indices and values), tensors trained whole and adapters; with
    ``include_backbone`` the whole backbone, else the backbone's fingerprint (it is re-read from
    ``model`` on load, checked against it). Any other module of the fit (a tagger's intent head) adds its own.
    """
    from ..model.backbone import load_backbone

    encoder = module.encoder
    tensors = {"head.weight": module.head.weight, "head.bias": module.head.bias}
    trained = list(getattr(module, "trained_names", []))
    for name, (idx, values) in module.delta().items():
        # int32 flat indices where they fit: half the bytes of the delta's index part.
        tensors[f"delta.{name}.indices"] = idx.to(torch.int32) if idx.numel() and int(idx.max()) < 2**31 else idx
        tensors[f"delta.{name}.values"] = values
    params = dict(encoder.named_parameters())
    base_names = set()
    backbone = {"model": os.fspath(model), "included": bool(include_backbone)}
    if include_backbone:
        for name, p in encoder.state_dict().items():
            tensors[f"backbone.{name}"] = p
    else:
        _, base, _ = load_backbone(model)
        base_names = set(dict(base.named_parameters()))
        backbone["fingerprint"] = backbone_fingerprint(base)
        extend_embeddings(base, list(added))  # the rows fit started from
        for name in trained:
            if name not in module.delta_names:
                tensors[f"tensor.{name}"] = params[name]
        _check_delta_reproduces(module, base, trained)
    fitted = {
        # What the module needs beyond the fitted attributes to be rebuilt.
        "dropout_module": float(module.dropout.p),
        "trained_names": trained,
        "adapter_names": [n for n in trained if n not in base_names] if not include_backbone else [],
        "encoder_config": encoder.config.to_dict(),
    }
    return tensors, fitted, backbone


def write_model_file(path, tensors, fields):
    """Write ``tensors`` and the JSON ``fields`` (with the format, versions and digest) to ``path``, atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "versions": dumps(versions()),
                **{k: v if isinstance(v, str) else dumps(v) for k, v in fields.items()}}
    metadata["digest"] = digest(tensors, metadata)
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name such as model.safetensors")
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _check_delta_reproduces(module, base, trained):
    """The base + saved delta must give the fitted weights exactly, or the file would lie."""
    base_params = dict(base.named_parameters())
    delta = module.delta()
    for name, p in module.encoder.named_parameters():
        if name not in base_params or (name in trained and name not in delta):
            continue  # adapters and tensors trained whole are stored as they are
        expected = base_params[name].detach().to(p.device, p.dtype)
        if name in delta:
            idx, vals = delta[name]
            expected = with_delta(expected, idx.to(p.device), vals.to(p.device))
        if not torch.equal(expected, p.detach()):
            raise RuntimeError(
                f"the backbone at model={module.encoder.config.name_or_path!r} no longer matches the one this "
                f"model was fitted on ({name} differs); save with include_backbone=True"
            )


# -- load ------------------------------------------------------------------------------
# What a file whose parts do not fit together raises while it is rebuilt (a forged file can
# carry a valid digest: the digest proves integrity, not that a writer made sense).
_INCONSISTENT = (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError, OverflowError,
                 RecursionError, UnicodeError)


def load_estimator(cls, path, device=None):
    """Rebuild a fitted ``cls`` from ``path`` (see :func:`save_estimator`).

    Anything in the file that does not fit the rest (metadata of the wrong type, tensors of
    the wrong shape or dtype, a tokenizer other than the backbone's) is a :class:`ModelFileError`.
    """
    metadata, tensors = read_estimator_file(path, "TokenSparseClassifier")
    return rebuild_or_refuse(path, lambda: _rebuild_estimator(cls, path, metadata, tensors, device))


def read_estimator_file(path, estimator):
    """``(metadata, tensors)`` of a model file written by ``estimator`` (another's file is refused by name)."""
    metadata, tensors = read_file(path)
    written = metadata.get("estimator", "TokenSparseClassifier")  # files before the tagger name none
    if written != estimator:
        raise ModelFileError(f"{path} holds a {written}, not a {estimator}: load it with {written}.load")
    return metadata, tensors


def rebuild_or_refuse(path, rebuild):
    """``rebuild()``, with any sign that the file's parts do not fit together raised as a ModelFileError."""
    try:
        return rebuild()
    except ModelFileError:
        raise
    except KeyError as exc:
        raise ModelFileError(f"{path}: the model file lacks the field {exc.args[0]!r}") from exc
    except _INCONSISTENT as exc:
        raise ModelFileError(f"{path}: the model file's contents do not fit together "
                             f"({type(exc).__name__}: {str(exc)[:300]})") from exc


def _rebuild_estimator(cls, path, metadata, tensors, device):
    from ..model.devices import resolve_device

    raw = json_object(path, metadata, "params")
    params = params_from_json(raw)
    fitted = json_object(path, metadata, "fitted")
    backbone = json_object(path, metadata, "backbone")
    try:
        values = fitted_from_json(fitted)
    except KeyError as exc:
        raise ModelFileError(f"{path}: the model file lacks the field {exc.args[0]!r}") from None
    describe_moved(values.get("strategy_"), moved_params({**raw, "strategy": params.get("strategy")})[1])
    est = cls(**params)
    est._validate_params()  # parameters a fit could not have had
    _check_fitted_values(path, est, values)
    tokenizer = tokenizer_from_files(path, json_object(path, metadata, "tokenizer"))
    encoder = _load_encoder(path, backbone, fitted, values["added_tokens_"], tokenizer)
    rejector = _rebuild_rejector(path, encoder, fitted, values, tensors, backbone["included"])  # before the merge
    module, mask = _rebuild_module(path, encoder, fitted, values,
                                   {k: v for k, v in tensors.items() if not k.startswith("rejector.")},
                                   backbone["included"])
    dev = resolve_device(device if device is not None else est.device)
    module.to(dev).eval()
    if rejector is not None:
        rejector.to(dev).eval()
    est = set_fitted(est, **values, mask_=mask, module_=module, tokenizer_=tokenizer, device_=dev, rejector_=rejector)
    proba = est.predict_proba(["a model file check"])  # what loads must predict
    if proba.shape != (1, len(values["classes_"])) or not np.isfinite(proba).all():
        raise ModelFileError(f"{path}: the rebuilt model does not give one finite probability per class")
    return est


def _check_fitted_values(path, est, values):
    """The fitted attributes agree with each other and with the parameters."""
    classes = values["classes_"]
    if classes.ndim != 1 or len(classes) < 1:
        raise ModelFileError(f"{path}: classes_ must be a non-empty list")
    thresholds = values["thresholds_"]
    if values["multilabel_"] and (thresholds is None or thresholds.shape != (len(classes),)):
        raise ModelFileError(f"{path}: a multi-label model needs one threshold per label")
    if est.unknown_label is not None:
        t = values["unknown_threshold_"]
        if not isinstance(t, float) or not 0.0 <= t <= 1.0:
            raise ModelFileError(f"{path}: unknown_label is set but unknown_threshold_ is {t!r}")
    if values["pooling_"] not in POOLINGS:
        raise ModelFileError(f"{path}: unknown pooling {values['pooling_']!r}")


def _load_encoder(path, backbone, fitted, added, tokenizer):
    """The backbone the model was fitted on: from the file, or re-read and checked by fingerprint."""
    from transformers import AutoConfig, AutoModel

    from ..model.backbone import load_backbone, set_padding

    base_tokenizer = None
    if backbone["included"]:
        config_dict = dict(fitted["encoder_config"])
        model_type = config_dict.pop("model_type")
        config = AutoConfig.for_model(model_type, **config_dict)
        encoder = AutoModel.from_config(config, dtype=torch.float32)
    else:
        try:
            base_tokenizer, encoder, _ = load_backbone(backbone["model"])
        except ValueError as exc:
            raise ModelFileError(f"{path}: its backbone model={backbone['model']!r} cannot be loaded here ({exc})") from None
        if backbone_fingerprint(encoder) != backbone["fingerprint"]:
            raise ModelFileError(
                f"{path} was fitted on a different backbone than the one model={backbone['model']!r} gives here "
                "(fingerprint mismatch); save the model with include_backbone=True to carry its backbone"
            )
        extend_embeddings(encoder, added)
    check_tokenizer(path, tokenizer, base_tokenizer, added, encoder.get_input_embeddings().weight.shape[0])
    set_padding(tokenizer, encoder.config)
    return encoder


def _rebuild_rejector(path, encoder, fitted, values, tensors, included):
    """The frozen backbone and linear probe that decide rejection (None for files without one).

    ``encoder`` is the backbone as fit started (re-read from ``model``), copied before the
    fitted delta is merged into it; with ``include_backbone`` the file carries the rejector's own.
    """
    import copy

    from ..model.module import ClassifierModule

    keys = [k for k in tensors if k.startswith("rejector.")]
    if not fitted.get("rejector", False):
        if keys:
            raise ModelFileError(f"{path}: unexpected tensor {keys[0]} in the model file")
        return REJECTOR
    if not isinstance(fitted["rejector"], bool):
        raise ModelFileError(f"{path}: the fitted field 'rejector' holds {fitted['rejector']!r}, not a bool")
    frozen = copy.deepcopy(encoder)
    if included:
        expected = frozen.state_dict()
        state = {k[len("rejector.backbone."):]: v for k, v in tensors.items() if k.startswith("rejector.backbone.")}
        for name, t in state.items():
            like = expected.get(name)
            if like is None or tuple(t.shape) != tuple(like.shape) or t.dtype != like.dtype:
                raise ModelFileError(f"{path}: tensor rejector.backbone.{name} does not fit the backbone")
        missing = [m for m in set(expected) - set(state) if not m.endswith("position_ids")]
        if missing:
            raise ModelFileError(f"{path}: the rejector's backbone lacks {sorted(missing)[:3]}")
        frozen.load_state_dict(state, strict=False)
    rejector = ClassifierModule(frozen, len(values["classes_"]), pooling=fitted["pooling"], dropout=0.0)
    for part in ("weight", "bias"):
        t, like = tensors.get(f"rejector.head.{part}"), getattr(rejector.head, part)
        if t is None or tuple(t.shape) != tuple(like.shape) or t.dtype != like.dtype:
            raise ModelFileError(f"{path}: the rejector's head {part} is missing or does not fit the model")
        with torch.no_grad():
            like.copy_(t)
    extra = [k for k in keys if not k.startswith(("rejector.head.", "rejector.backbone.")) or
             (k.startswith("rejector.backbone.") and not included)]
    if extra:
        raise ModelFileError(f"{path}: unexpected tensor {extra[0]} in the model file")
    for p in rejector.parameters():
        p.requires_grad_(False)
    return rejector.eval()


def _rebuild_module(path, encoder, fitted, values, tensors, included, module=None):
    """The fitted ClassifierModule (delta merged) and its mask, from the file's tensors.

    ``module``: an empty module of another shape to fill (a tagger's), in place of a ClassifierModule.
    """
    from ..model.mask import SparseMask
    from ..model.module import ClassifierModule, param_key

    if module is None:
        module = ClassifierModule(encoder, len(values["classes_"]), pooling=fitted["pooling"],
                                  dropout=fitted["dropout_module"])
    mask = None
    if fitted["mask_shapes"] is None:
        from_description(values["strategy_"]).rebuild(module)  # adapters: same structure, then their values
    delta = check_tensors(path, module, tensors, fitted["trained_names"], included)
    if fitted["mask_shapes"] is not None:
        shapes = {k: tuple(v) for k, v in fitted["mask_shapes"].items()}
        params = dict(module.encoder.named_parameters())
        if any(n not in params or tuple(params[n].shape) != shape for n, shape in shapes.items()):
            raise ModelFileError(f"{path}: the mask's tensor shapes do not fit the backbone")
        whole = {n: torch.arange(int(np.prod(shapes[n]))) for n in fitted["trained_names"] if n not in delta}
        mask = SparseMask({**{n: idx for n, (idx, _) in delta.items()}, **whole}, shapes)
    if mask is not None:
        # The delta is registered again, so that the loaded model knows what it learned (save, exports).
        module.set_mask(SparseMask({n: idx for n, (idx, _) in delta.items()}, shapes))
    with torch.no_grad():
        for n, (_, vals) in delta.items():
            module.delta_values[param_key(n)].copy_(vals)
        if included:  # the saved backbone already holds the delta
            state = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
            missing, unexpected = module.encoder.load_state_dict(state, strict=False)
            if unexpected or [m for m in missing if not m.endswith("position_ids")]:
                raise ModelFileError(f"{path}: backbone tensors do not fit the saved config ({missing[:3]}, {unexpected[:3]})")
            module.merged = True
            for p in module.parameters():
                p.requires_grad_(False)
        else:
            enc_params = dict(module.encoder.named_parameters())
            for n in fitted["trained_names"]:
                if n in enc_params and f"tensor.{n}" in tensors:
                    enc_params[n].copy_(tensors[f"tensor.{n}"])
        module.head.weight.copy_(tensors["head.weight"])
        module.head.bias.copy_(tensors["head.bias"])
    module.merge_()  # folds the delta in (unless the saved backbone held it) and freezes everything
    module.trained_names = fitted["trained_names"]
    return module, mask
