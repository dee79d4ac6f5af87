"""The sksparseft model file: one safetensors file with JSON metadata; nothing executes on load.

What the format is and how its integrity is checked: the header fields, the SHA-256 digest
over metadata and tensors, the embedded tokenizer files, and the checks that a file's
tensors fit the module they are loaded into. :mod:`.persistence` maps an estimator onto it.
"""

from __future__ import annotations

import base64
import json
import platform
import tempfile
from pathlib import Path

import torch

from ..model.backbone import backbone_fingerprint, tensors_sha256
from .fitted import json_default

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "backbone_fingerprint", "check_tensors", "check_tokenizer",
           "digest", "dumps", "json_object", "read_file", "tensors_sha256", "tokenizer_files", "tokenizer_from_files",
           "versions"]

FORMAT = "sksparseft"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A file that is not a readable sksparseft model (truncated, tampered, other format)."""


def dumps(obj):
    return json.dumps(obj, default=json_default, sort_keys=True, allow_nan=True)


# -- tokenizer files -------------------------------------------------------------------
def tokenizer_files(tokenizer):
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


def tokenizer_from_files(path, files):
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


def check_tokenizer(path, tokenizer, base, added, n_embeddings):
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
def digest(tensors, metadata):
    """The file's integrity digest: its metadata (the digest itself left out) and every tensor."""
    return tensors_sha256(tensors, dumps({k: v for k, v in metadata.items() if k != "digest"}).encode())


def versions():
    import sklearn
    import transformers

    from .. import __version__

    return {"sksparseft": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "scikit-learn": sklearn.__version__, "python": platform.python_version()}


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
    if digest(tensors, metadata) != metadata.get("digest"):
        raise ModelFileError(f"{path} fails its integrity check: the file was modified or corrupted after it was saved")
    return metadata, tensors


def json_object(path, metadata, key):
    try:
        value = json.loads(metadata[key])
    except KeyError:
        raise ModelFileError(f"{path}: the model file lacks its {key!r} metadata") from None
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path}: the {key!r} metadata is not readable JSON ({str(exc)[:100]})") from None
    if not isinstance(value, dict):
        raise ModelFileError(f"{path}: the {key!r} metadata is a {type(value).__name__}, not an object")
    return value


# -- tensors against the module they load into ---------------------------------------
_INDEX_DTYPES = (torch.int32, torch.int64)


def check_tensors(path, module, tensors, trained_names, included):
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
