"""Safe persistence: one safetensors file, JSON metadata, nothing executed on load.

The file holds what ``fit`` learned relative to the pretrained backbone: the head, the
sparse delta (flat indices + values per tensor), tensors trained whole, adapters; plus, as
JSON in the safetensors header, the parameters, classes, token groups, mask layout, history,
tokenizer files, format and library versions, and a SHA-256 digest of all of it. The
backbone itself is re-read from ``model`` on load (checked against a fingerprint) unless it
was saved inside the file (``include_backbone=True``).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import platform
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write
from .vocabulary import added_from_json, added_to_json, extend_embeddings

FORMAT = "sksparseft"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A file that is not a readable sksparseft model (truncated, tampered, other format)."""


# -- JSON of Python/numpy values -------------------------------------------------------
def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} cannot be saved as JSON")


def _dumps(obj):
    return json.dumps(obj, default=_plain, sort_keys=True, allow_nan=True)


def _labels_to_json(labels):
    labels = np.asarray(labels)
    values = [_plain(v) if isinstance(v, np.generic) else v for v in labels.tolist()]
    for v in values:
        if not isinstance(v, (str, int, float, bool)):
            raise TypeError(
                f"class labels of type {type(v).__name__} cannot be saved safely; use str/int labels or pickle"
            )
    return {"dtype": "object" if labels.dtype == object else labels.dtype.str, "values": values}


def _labels_from_json(obj):
    if obj["dtype"] == "object":
        out = np.empty(len(obj["values"]), dtype=object)
        out[:] = obj["values"]
        return out
    return np.asarray(obj["values"], dtype=np.dtype(obj["dtype"]))


def _label_from_json(value, classes):
    # A token group's label is one of classes_: give back that very object (numpy type included).
    for c in classes:
        if (_plain(c) if isinstance(c, np.generic) else c) == value:
            return c
    return value


# -- parameters ------------------------------------------------------------------------
def _params_to_json(est):
    params = est.get_params(deep=False)
    out = {}
    for k, v in params.items():
        if k == "callbacks" and v:
            warnings.warn("the callbacks parameter is not saved (callbacks are code); the loaded model has callbacks=None", stacklevel=3)
            v = None
        if k == "class_weight" and isinstance(v, dict):
            v = {"__pairs__": [[_plain(a) if isinstance(a, np.generic) else a, float(b)] for a, b in v.items()]}
        out[k] = v
    return out


def _params_from_json(params):
    params = dict(params)
    # Files from before these options were fitted without them.
    params.setdefault("refit_head", False)
    params.setdefault("average_epochs", False)
    cw = params.get("class_weight")
    if isinstance(cw, dict) and "__pairs__" in cw:
        params["class_weight"] = {a: b for a, b in cw["__pairs__"]}
    return params


# -- tokenizer files -------------------------------------------------------------------
def _tokenizer_files(tokenizer):
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        files = {}
        for p in sorted(Path(tmp).iterdir()):
            data = p.read_bytes()
            try:
                files[p.name] = {"text": data.decode("utf-8")}
            except UnicodeDecodeError:
                files[p.name] = {"base64": base64.b64encode(data).decode("ascii")}
        return files


def _tokenizer_from_files(files):
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            if "/" in name or "\\" in name or name in ("", ".", ".."):
                raise ModelFileError(f"tokenizer file name {name!r} is not a plain file name")
            data = content["text"].encode("utf-8") if "text" in content else base64.b64decode(content["base64"])
            (Path(tmp) / name).write_bytes(data)
        return AutoTokenizer.from_pretrained(tmp, local_files_only=True, trust_remote_code=False)


# -- digest and fingerprint ------------------------------------------------------------
def _digest(tensors, metadata):
    h = hashlib.sha256()
    h.update(_dumps({k: v for k, v in metadata.items() if k != "digest"}).encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def backbone_fingerprint(encoder):
    """SHA-256 over the backbone's tensor names, shapes and float32 bytes."""
    h = hashlib.sha256()
    for name, p in sorted(encoder.state_dict().items()):
        t = p.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _versions():
    import sklearn
    import transformers

    from . import __version__

    return {"sksparseft": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "scikit-learn": sklearn.__version__, "python": platform.python_version()}


# -- save ------------------------------------------------------------------------------
def save_estimator(est, path, include_backbone=False):
    """Write a fitted estimator to ``path`` atomically (see module docstring)."""
    from safetensors.torch import save_file

    from .backbone import load_backbone

    module = est.module_
    encoder = module.encoder
    tensors = {"head.weight": module.head.weight, "head.bias": module.head.bias}
    trained = list(getattr(module, "trained_names", []))
    for name, (idx, values) in module.delta().items():
        # int32 flat indices where they fit: half the bytes of the delta's index part.
        tensors[f"delta.{name}.indices"] = idx.to(torch.int32) if idx.numel() and int(idx.max()) < 2**31 else idx
        tensors[f"delta.{name}.values"] = values
    params = dict(encoder.named_parameters())
    base_names = set()
    backbone = {"model": os.fspath(est.model), "included": bool(include_backbone)}
    if include_backbone:
        for name, p in encoder.state_dict().items():
            tensors[f"backbone.{name}"] = p
    else:
        _, base, _ = load_backbone(est.model)
        base_names = set(dict(base.named_parameters()))
        backbone["fingerprint"] = backbone_fingerprint(base)
        extend_embeddings(base, getattr(est, "added_tokens_", []))  # the rows fit started from
        for name in trained:
            if name not in module.delta_names:
                tensors[f"tensor.{name}"] = params[name]
        _check_delta_reproduces(module, base, trained)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    mask = est.mask_
    fitted = {
        "classes": _labels_to_json(est.classes_),
        "token_groups": [dict(dataclasses.asdict(g), label=_labels_to_json([g.label])["values"][0]) for g in est.token_groups_],
        "added_tokens": added_to_json(getattr(est, "added_tokens_", [])),
        "strategy": est.strategy_,
        "mask_shapes": mask.shapes if mask is not None else None,
        "mask_summary": est.mask_summary_,
        "n_trainable_params": int(est.n_trainable_params_),
        "learning_rate": float(est.learning_rate_),
        "history": est.history_,
        "pooling": est.pooling_,
        "dropout_module": float(module.dropout.p),
        "interrupted": bool(est.interrupted_),
        "finetuned": bool(est.finetuned_),
        "interpolation": float(getattr(est, "interpolation_", 1.0)),
        # JSON keys are strings: the points travel as [a, accuracy, log-loss] rows.
        "interpolation_scores": [[a, *s] for a, s in getattr(est, "interpolation_scores_", {}).items()],
        "fit_time": float(est.fit_time_),
        "fit_stages": getattr(est, "fit_stages_", {}),
        "trained_names": trained,
        "adapter_names": [n for n in trained if n not in base_names] if not include_backbone else [],
        "encoder_config": encoder.config.to_dict(),
    }
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "versions": _dumps(_versions()),
        "params": _dumps(_params_to_json(est)),
        "fitted": _dumps(fitted),
        "tokenizer": _dumps(_tokenizer_files(est.tokenizer_)),
        "backbone": _dumps(backbone),
    }
    metadata["digest"] = _digest(tensors, metadata)

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
            expected = expected.reshape(-1).index_add(0, idx.to(p.device), vals.to(p.device, p.dtype)).view_as(p)
        if not torch.equal(expected, p.detach()):
            raise RuntimeError(
                f"the backbone at model={module.encoder.config.name_or_path!r} no longer matches the one this "
                f"model was fitted on ({name} differs); save with include_backbone=True"
            )


# -- load ------------------------------------------------------------------------------
def read_file(path):
    """``(metadata, tensors)`` of a sksparseft model file, after every integrity check."""
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path} is not a readable sksparseft model file (truncated or corrupted?): {exc}") from exc
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path} is a safetensors file but not a sksparseft model (format={metadata.get('format')!r})")
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError:
        raise ModelFileError(f"{path}: unreadable format_version {metadata.get('format_version')!r}") from None
    if version > FORMAT_VERSION:
        written_by = json.loads(metadata.get("versions", "{}")).get("sksparseft", "a newer version")
        raise ModelFileError(
            f"{path} uses model file format {version}, written by sksparseft {written_by}; this sksparseft "
            f"reads format {FORMAT_VERSION} and older: upgrade sksparseft to load it"
        )
    if _digest(tensors, metadata) != metadata.get("digest"):
        raise ModelFileError(f"{path} fails its integrity check: the file was modified or corrupted after it was saved")
    return metadata, tensors


def load_estimator(cls, path, device=None):
    """Rebuild a fitted ``cls`` from ``path`` (see :func:`save_estimator`)."""
    from transformers import AutoConfig, AutoModel

    from .backbone import load_backbone, resolve_device, set_padding
    from .mask import SparseMask
    from .module import ClassifierModule
    from .strategies import get_strategy
    from .tokens import TokenGroup

    metadata, tensors = read_file(path)
    params = _params_from_json(json.loads(metadata["params"]))
    fitted = json.loads(metadata["fitted"])
    backbone = json.loads(metadata["backbone"])
    added = added_from_json(fitted.get("added_tokens"))
    est = cls(**params)

    tokenizer = _tokenizer_from_files(json.loads(metadata["tokenizer"]))
    if backbone["included"]:
        config_dict = dict(fitted["encoder_config"])
        model_type = config_dict.pop("model_type")
        config = AutoConfig.for_model(model_type, **config_dict)
        encoder = AutoModel.from_config(config, dtype=torch.float32)
    else:
        _, encoder, _ = load_backbone(backbone["model"])
        if backbone_fingerprint(encoder) != backbone["fingerprint"]:
            raise ModelFileError(
                f"{path} was fitted on a different backbone than the one model={backbone['model']!r} gives here "
                "(fingerprint mismatch); save the model with include_backbone=True to carry its backbone"
            )
        extend_embeddings(encoder, added)
    set_padding(tokenizer, encoder.config)
    classes = _labels_from_json(fitted["classes"])
    module = ClassifierModule(encoder, len(classes), pooling=fitted["pooling"], dropout=fitted["dropout_module"])
    strategy_info = dict(fitted["strategy"])
    name = strategy_info.pop("strategy")
    # {tensor name: (flat indices, values)} of the sparse delta
    delta = {k[len("delta."):-len(".indices")]: (v.long(), tensors[f"{k[:-len('.indices')]}.values"])
             for k, v in tensors.items() if k.startswith("delta.") and k.endswith(".indices")}
    mask = None
    if fitted["mask_shapes"] is not None:
        shapes = {k: tuple(v) for k, v in fitted["mask_shapes"].items()}
        whole = {n: torch.arange(int(np.prod(shapes[n]))) for n in fitted["trained_names"] if n not in delta}
        mask = SparseMask({**{n: idx for n, (idx, _) in delta.items()}, **whole}, shapes)
    else:
        get_strategy(name, strategy_info).setup(module, None)  # adapters: same structure, then their values
    if backbone["included"]:
        state = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
        missing, unexpected = module.encoder.load_state_dict(state, strict=False)
        if unexpected or [m for m in missing if not m.endswith("position_ids")]:
            raise ModelFileError(f"{path}: backbone tensors do not fit the saved config ({missing[:3]}, {unexpected[:3]})")
    else:
        with torch.no_grad():
            enc_params = dict(module.encoder.named_parameters())
            for n in fitted["trained_names"]:
                if n in enc_params and f"tensor.{n}" in tensors:
                    enc_params[n].copy_(tensors[f"tensor.{n}"])
            for n, (idx, values) in delta.items():
                p = enc_params[n]
                p.view(-1).index_add_(0, idx, values.to(p.dtype))
    with torch.no_grad():
        module.head.weight.copy_(tensors["head.weight"])
        module.head.bias.copy_(tensors["head.bias"])
    module.trained_names = fitted["trained_names"]
    module.merged = True
    dev = resolve_device(device if device is not None else est.device)
    module.to(dev).eval()

    est.classes_ = classes
    est.token_groups_ = [
        TokenGroup(**dict(g, token_ids=tuple(g["token_ids"]), pieces=tuple(g.get("pieces", ())),
                          label=_label_from_json(g["label"], classes)))
        for g in fitted["token_groups"]
    ]
    est.added_tokens_ = added
    est.strategy_ = fitted["strategy"]
    est.mask_ = mask
    est.mask_summary_ = fitted["mask_summary"]
    est.n_trainable_params_ = fitted["n_trainable_params"]
    est.learning_rate_ = fitted["learning_rate"]
    est.history_ = fitted["history"]
    est.pooling_ = fitted["pooling"]
    est.interrupted_ = fitted["interrupted"]
    est.finetuned_ = fitted["finetuned"]
    est.interpolation_ = fitted.get("interpolation", 1.0 if est.finetuned_ else 0.0)
    est.interpolation_scores_ = {row[0]: tuple(row[1:]) for row in fitted.get("interpolation_scores", [])}
    est.fit_time_ = fitted["fit_time"]
    est.fit_stages_ = fitted["fit_stages"]
    est.module_ = module
    est.tokenizer_ = tokenizer
    est.device_ = dev
    return est
