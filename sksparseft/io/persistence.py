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
import hashlib
import json
import os
import platform
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..model.backbone import POOLINGS
from .atomic import atomic_write
from .fitted import fitted_from_json, fitted_to_json, json_default, set_fitted
from ..strategies import from_description
from ..text.vocabulary import extend_embeddings

FORMAT = "sksparseft"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A file that is not a readable sksparseft model (truncated, tampered, other format)."""


def _dumps(obj):
    return json.dumps(obj, default=json_default, sort_keys=True, allow_nan=True)


# -- parameters ------------------------------------------------------------------------
def _params_to_json(est):
    params = est.get_params(deep=False)
    out = {}
    for k, v in params.items():
        if k == "callbacks" and v:
            warnings.warn("the callbacks parameter is not saved (callbacks are code); the loaded model has callbacks=None", stacklevel=3)
            v = None
        if k == "class_weight" and isinstance(v, dict):
            v = {"__pairs__": [[json_default(a) if isinstance(a, np.generic) else a, float(b)] for a, b in v.items()]}
        out[k] = v
    return out


def _params_from_json(params):
    params = dict(params)
    # Files from before these options were fitted without them.
    params.setdefault("refit_head", False)
    params.setdefault("average_epochs", False)
    params.setdefault("contrastive_epochs", 0)  # files saved before 0.3.0 were fitted without the stage
    params.setdefault("unknown_label", None)  # before 0.4.0: no rejection, one label per text
    params.setdefault("unknown_threshold", "auto")
    params.setdefault("multilabel_threshold", 0.5)
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


def _tokenizer_from_files(path, files):
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
                raise ModelFileError(f"{path}: tokenizer file name {name!r} is not a plain file name")
            data = content["text"].encode("utf-8") if "text" in content else base64.b64decode(content["base64"])
            (Path(tmp) / name).write_bytes(data)
        try:
            return AutoTokenizer.from_pretrained(tmp, local_files_only=True, trust_remote_code=False)
        except Exception as exc:  # noqa: BLE001 - tokenizers raises its own types for unreadable files
            raise ModelFileError(f"{path}: the tokenizer files in the model file are not readable "
                                 f"({type(exc).__name__}: {str(exc)[:200]})") from None


def _check_tokenizer(path, tokenizer, base, added, n_embeddings):
    """The saved tokenizer is the backbone's (plus the added tokens) and fits the embeddings."""
    if base is not None:
        vocab, base_vocab = tokenizer.get_vocab(), base.get_vocab()
        extra = {a.text for a in added}
        if {k: v for k, v in vocab.items() if k not in extra} != base_vocab:
            raise ModelFileError(f"{path}: the tokenizer in the model file is not the backbone's tokenizer")
        probe = "Model-file check: Ünïcode, digits 12345, and a URL http://x.io"
        if not added and tokenizer(probe)["input_ids"] != base(probe)["input_ids"]:
            raise ModelFileError(f"{path}: the tokenizer in the model file splits text unlike the backbone's")
    if max(tokenizer.get_vocab().values(), default=0) >= n_embeddings:
        raise ModelFileError(f"{path}: the tokenizer has ids beyond the backbone's {n_embeddings} embedding rows")


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

    from .. import __version__

    return {"sksparseft": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "scikit-learn": sklearn.__version__, "python": platform.python_version()}


# -- save ------------------------------------------------------------------------------
def save_estimator(est, path, include_backbone=False):
    """Write a fitted estimator to ``path`` atomically (see module docstring)."""
    from safetensors.torch import save_file

    from ..model.backbone import load_backbone

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
    rejector = getattr(est, "rejector_", None)
    if rejector is not None:
        tensors["rejector.head.weight"], tensors["rejector.head.bias"] = rejector.head.weight, rejector.head.bias
        if include_backbone:  # otherwise the rejector's backbone is the one re-read from ``model``
            for name, p in rejector.encoder.state_dict().items():
                tensors[f"rejector.backbone.{name}"] = p
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    fitted = fitted_to_json(est)
    fitted.update({
        # What the module needs beyond the fitted attributes to be rebuilt.
        "mask_shapes": est.mask_.shapes if est.mask_ is not None else None,
        "dropout_module": float(module.dropout.p),
        "trained_names": trained,
        "adapter_names": [n for n in trained if n not in base_names] if not include_backbone else [],
        "encoder_config": encoder.config.to_dict(),
        "rejector": rejector is not None,
    })
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
_INDEX_DTYPES = (torch.int32, torch.int64)


def _check_tensors(path, module, tensors, trained_names, included):
    """``{tensor name: (flat indices, values)}`` of the sparse delta, once every tensor fits the module."""
    params = dict(module.encoder.named_parameters())
    state = module.encoder.state_dict()

    def expect(key, t, like):
        if tuple(t.shape) != tuple(like.shape) or t.dtype != like.dtype:
            raise ModelFileError(f"{path}: tensor {key} is {t.dtype} {tuple(t.shape)}, "
                                 f"the model needs {like.dtype} {tuple(like.shape)}")

    delta = {}
    for key, t in tensors.items():
        if key in ("head.weight", "head.bias"):
            expect(key, t, getattr(module.head, key.split(".")[1]))
        elif key.startswith("tensor."):
            name = key[len("tensor."):]
            if name not in params or name not in trained_names:
                raise ModelFileError(f"{path}: tensor {key} names no trained tensor of the backbone")
            expect(key, t, params[name])
        elif key.startswith("backbone.") and included:
            name = key[len("backbone."):]
            if name not in state:
                raise ModelFileError(f"{path}: tensor {key} is not part of the backbone")
            expect(key, t, state[name])
        elif key.startswith("delta.") and key.endswith((".indices", ".values")):
            name, part = key[len("delta."):].rsplit(".", 1)
            if name not in params:
                raise ModelFileError(f"{path}: tensor {key} is a delta for {name}, which the backbone lacks")
            idx, vals = tensors.get(f"delta.{name}.indices"), tensors.get(f"delta.{name}.values")
            if idx is None or vals is None:
                raise ModelFileError(f"{path}: the delta of {name} lacks its {'values' if vals is None else 'indices'}")
            if part == "values":
                continue
            p = params[name]
            if idx.dtype not in _INDEX_DTYPES or idx.dim() != 1 or vals.dtype != p.dtype or vals.shape != idx.shape:
                raise ModelFileError(f"{path}: the delta of {name} has indices {idx.dtype} {tuple(idx.shape)} and values "
                                     f"{vals.dtype} {tuple(vals.shape)}; it needs 1-D integer indices and {p.dtype} values")
            idx = idx.long()
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= p.numel() or idx.unique().numel() != idx.numel()):
                raise ModelFileError(f"{path}: the delta of {name} has indices outside 0..{p.numel() - 1} or repeated")
            delta[name] = (idx, vals)
        else:
            raise ModelFileError(f"{path}: unexpected tensor {key} in the model file")
    if "head.weight" not in tensors or "head.bias" not in tensors:
        raise ModelFileError(f"{path}: the model file lacks the head")
    return delta


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


# What a file whose parts do not fit together raises while it is rebuilt (a forged file can
# carry a valid digest: the digest proves integrity, not that a writer made sense).
_INCONSISTENT = (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError, OverflowError,
                 RecursionError, UnicodeError)


def load_estimator(cls, path, device=None):
    """Rebuild a fitted ``cls`` from ``path`` (see :func:`save_estimator`).

    Anything in the file that does not fit the rest (metadata of the wrong type, tensors of
    the wrong shape or dtype, a tokenizer other than the backbone's) is a :class:`ModelFileError`.
    """
    metadata, tensors = read_file(path)
    try:
        return _rebuild_estimator(cls, path, metadata, tensors, device)
    except ModelFileError:
        raise
    except KeyError as exc:
        raise ModelFileError(f"{path}: the model file lacks the field {exc.args[0]!r}") from exc
    except _INCONSISTENT as exc:
        raise ModelFileError(f"{path}: the model file's contents do not fit together "
                             f"({type(exc).__name__}: {str(exc)[:300]})") from exc


def _rebuild_estimator(cls, path, metadata, tensors, device):
    from ..model.devices import resolve_device

    params = _params_from_json(_json_object(path, metadata, "params"))
    fitted = _json_object(path, metadata, "fitted")
    backbone = _json_object(path, metadata, "backbone")
    try:
        values = fitted_from_json(fitted)
    except KeyError as exc:
        raise ModelFileError(f"{path}: the model file lacks the field {exc.args[0]!r}") from None
    est = cls(**params)
    est._validate_params()  # parameters a fit could not have had
    _check_fitted_values(path, est, values)
    tokenizer = _tokenizer_from_files(path, _json_object(path, metadata, "tokenizer"))
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


def _json_object(path, metadata, key):
    try:
        value = json.loads(metadata[key])
    except KeyError:
        raise ModelFileError(f"{path}: the model file lacks its {key!r} metadata") from None
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path}: the {key!r} metadata is not readable JSON ({str(exc)[:100]})") from None
    if not isinstance(value, dict):
        raise ModelFileError(f"{path}: the {key!r} metadata is a {type(value).__name__}, not an object")
    return value


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
    _check_tokenizer(path, tokenizer, base_tokenizer, added, encoder.get_input_embeddings().weight.shape[0])
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
        return None
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


def _rebuild_module(path, encoder, fitted, values, tensors, included):
    """The fitted ClassifierModule (delta merged) and its mask, from the file's tensors."""
    from ..model.mask import SparseMask
    from ..model.module import ClassifierModule, param_key

    module = ClassifierModule(encoder, len(values["classes_"]), pooling=fitted["pooling"], dropout=fitted["dropout_module"])
    mask = None
    if fitted["mask_shapes"] is None:
        from_description(values["strategy_"]).rebuild(module)  # adapters: same structure, then their values
    delta = _check_tensors(path, module, tensors, fitted["trained_names"], included)
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
