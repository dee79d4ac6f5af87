"""Saved model files, damaged or forged in 500+ seeded ways: ``load`` refuses them or loads the original.

Every case rewrites a good file: bytes flipped or the file cut short in each region (header
length, JSON header, tensor data), header lengths that are huge or negative, nested or huge
JSON metadata, metadata fields removed or of the wrong type, tensors of the wrong shape or
dtype, out-of-range delta indices, a tokenizer of another vocabulary; the forged ones with
their digest recomputed, so that only the structural checks stand between them and a model.
``load`` must raise :class:`ModelFileError` or return a model that predicts like the original,
never another exception; the CLI must exit with code 3.
"""

import json
import struct

import numpy as np
import pytest
import torch
from cases import FAST as BASE
from safetensors.torch import save as save_bytes

from sksparseft import TokenSparseClassifier
from sksparseft.cli import EXIT_MODEL, main
from sksparseft.io.model_file import ModelFileError, digest as _digest

N_CASES = 520
FAST = dict(BASE, random_state=0, validation_fraction=0.0, learning_rate=1e-2)


@pytest.fixture(scope="module")
def original(tiny_model, toy_data, tmp_path_factory):
    X, y = toy_data
    model = TokenSparseClassifier(tiny_model, **FAST).fit(X, y)
    path = model.save(tmp_path_factory.mktemp("fuzz") / "model.safetensors")
    return path.read_bytes(), model.predict_proba(X), X


def _parts(data):
    """``(metadata, tensors)`` of a safetensors file's bytes, without any sksparseft check."""
    from safetensors.torch import load as load_bytes

    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    return dict(header.get("__metadata__", {})), load_bytes(data)


def _forge(meta, tensors, digest=True):
    """A well-formed safetensors file of ``tensors`` and ``meta``, its digest recomputed over them."""
    meta = {k: v for k, v in meta.items()}
    if digest:
        meta["digest"] = _digest(tensors, meta)
    return save_bytes({k: v.contiguous() for k, v in tensors.items()}, metadata=meta)


def _nested(depth):
    return "[" * depth + "]" * depth


def _other_tokenizer(tmp_dir):
    """The tokenizer files of a WordPiece vocabulary of 40 tokens, as the file stores them."""
    from transformers import BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)]
    (tmp_dir / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = BertTokenizerFast(vocab_file=str(tmp_dir / "vocab.txt"))
    from sksparseft.io.model_file import tokenizer_files as _tokenizer_files

    return _tokenizer_files(tok)


def _mutate(data, rng, tmp_dir):
    """One damaged or forged version of the file ``data`` and a short name of what was done."""
    n = struct.unpack("<Q", data[:8])[0]
    regions = {"length": (0, 8), "header": (8, 8 + n), "data": (8 + n, len(data))}
    kind = rng.integers(12)
    if kind == 0:  # flip 1-8 bytes in one region
        region = list(regions)[rng.integers(3)]
        lo, hi = regions[region]
        out = bytearray(data)
        for pos in rng.integers(lo, hi, size=rng.integers(1, 9)):
            out[pos] ^= int(rng.integers(1, 256))
        return bytes(out), f"flip in {region}"
    if kind == 1:  # cut short in one region (or empty)
        region = list(regions)[rng.integers(3)]
        lo, hi = regions[region]
        return data[: int(rng.integers(lo, hi))], f"truncated in {region}"
    if kind == 2:  # a header length that is huge, negative as signed, zero, or a little off
        value = [2**64 - 1, 2**63, 2**63 - 1, 0, n + 1, n - 1, len(data), 2**32][rng.integers(8)]
        return struct.pack("<Q", value) + data[8:], f"header length {value}"
    meta, tensors = _parts(data)
    if kind == 3:  # a metadata field nested very deep or huge, digest recomputed
        key = ["params", "fitted", "tokenizer", "backbone", "versions"][rng.integers(5)]
        meta[key] = _nested(int(rng.choice([1000, 100_000]))) if rng.integers(2) else json.dumps(["x" * 2**22])
        return _forge(meta, tensors), f"{key}: nested or huge JSON"
    if kind == 4:  # a metadata field of the wrong JSON type or not JSON
        key = ["params", "fitted", "tokenizer", "backbone", "versions", "format_version"][rng.integers(6)]
        meta[key] = ["null", "[]", "1", '"text"', "{", "", "NaN", '{"a": 1}'][rng.integers(8)]
        return _forge(meta, tensors), f"{key} replaced"
    if kind == 5:  # a key removed from one of the JSON fields
        key = ["params", "fitted", "backbone"][rng.integers(3)]
        obj = json.loads(meta[key])
        if isinstance(obj, dict) and obj:
            obj.pop(sorted(obj)[rng.integers(len(obj))])
        meta[key] = json.dumps(obj)
        return _forge(meta, tensors), f"a key removed from {key}"
    if kind == 6:  # a value inside "fitted" or "params" of the wrong type
        key = ["params", "fitted"][rng.integers(2)]
        obj = json.loads(meta[key])
        field = sorted(obj)[rng.integers(len(obj))]
        obj[field] = [None, -1, "x", [], {}, 1e308, [[1, 2]], True][rng.integers(8)]
        meta[key] = json.dumps(obj)
        return _forge(meta, tensors), f"{key}.{field} of the wrong type"
    if kind == 7:  # a metadata field removed entirely
        meta.pop(sorted(k for k in meta if k != "digest")[rng.integers(len(meta) - 1)])
        return _forge(meta, tensors), "a metadata field removed"
    name = sorted(tensors)[rng.integers(len(tensors))]
    t = tensors[name]
    if kind == 8:  # a tensor of the wrong shape
        shape = [(1,), (0,), (t.numel() + 1,), tuple(reversed(t.shape)) + (1,), (2, 3, 4)][rng.integers(5)]
        tensors[name] = torch.zeros(shape, dtype=t.dtype)
        return _forge(meta, tensors), f"{name} reshaped to {shape}"
    if kind == 9:  # a tensor of the wrong dtype
        dtype = [torch.float16, torch.float64, torch.int8, torch.int64, torch.bool, torch.bfloat16][rng.integers(6)]
        tensors[name] = t.to(dtype)
        return _forge(meta, tensors), f"{name} as {dtype}"
    if kind == 10:  # delta indices out of range, or a tensor removed / added
        indices = [k for k in tensors if k.endswith(".indices")]
        choice = rng.integers(3)
        if choice == 0 and indices:
            k = indices[rng.integers(len(indices))]
            bad = tensors[k].clone()
            bad[rng.integers(bad.numel())] = int(rng.choice([-1, 2**31 - 1, -(2**31)]))
            tensors[k] = bad
            return _forge(meta, tensors), f"{k} out of range"
        if choice == 1:
            tensors.pop(name)
            return _forge(meta, tensors), f"{name} removed"
        tensors["delta.unknown.weight.indices"] = torch.zeros(3, dtype=torch.int32)
        tensors["delta.unknown.weight.values"] = torch.zeros(3)
        return _forge(meta, tensors), "a delta for a tensor the backbone lacks"
    # kind 11: a tokenizer of another vocabulary (or one file of it emptied)
    files = json.loads(meta["tokenizer"])
    if rng.integers(2):
        files = _other_tokenizer(tmp_dir)
        what = "tokenizer of another vocabulary"
    else:
        victim = sorted(files)[rng.integers(len(files))]
        files[victim] = {"text": ""}
        what = f"tokenizer file {victim} emptied"
    meta["tokenizer"] = json.dumps(files)
    return _forge(meta, tensors), what


def test_damaged_or_forged_files_are_refused_or_load_the_original(original, tmp_path):
    data, proba, X = original
    rng = np.random.default_rng(0)
    path = tmp_path / "case.safetensors"
    outcomes = {"refused": 0, "loaded": 0}
    for case in range(N_CASES):
        mutated, what = _mutate(data, rng, tmp_path)
        path.write_bytes(mutated)
        try:
            model = TokenSparseClassifier.load(path)
        except ModelFileError:
            outcomes["refused"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the guarantee under test: no other exception
            pytest.fail(f"case {case} ({what}): {type(exc).__name__}: {exc}"[:2000])
        outcomes["loaded"] += 1
        np.testing.assert_allclose(model.predict_proba(X), proba, atol=1e-6, err_msg=f"case {case} ({what})")
    # The cases must mostly damage something: a fuzz that loads everything tests nothing.
    assert outcomes["refused"] > N_CASES * 0.8, outcomes


@pytest.mark.parametrize("seed", range(6))
def test_cli_exits_with_the_model_error_code(original, tmp_path, capsys, seed):
    data, _, X = original
    mutated, what = _mutate(data, np.random.default_rng(100 + seed), tmp_path)
    path = tmp_path / "case.safetensors"
    path.write_bytes(mutated)
    texts = tmp_path / "texts.csv"
    texts.write_text("text\n" + "\n".join(X[:3]) + "\n")
    try:
        TokenSparseClassifier.load(path)
        expected = 0
    except ModelFileError:
        expected = EXIT_MODEL
    out = tmp_path / "out.csv"
    assert main(["predict", "--model", str(path), "--data", str(texts), "--output", str(out), "--quiet"]) == expected, what
