"""The model file format (io/model_file.py), function by function: the digest and fingerprint (pinned:
a change to either formula makes every saved file unreadable), read_file's refusals, the embedded
tokenizer files, and the checks of a file's tensors against the module they load into.

Refusals of whole saved models through load are in test_persistence.py and test_model_file_fuzz.py.
"""

import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file

import sksparseft
from cases import tiny_module
from sksparseft.io.model_file import (
    FORMAT, FORMAT_VERSION, ModelFileError, backbone_fingerprint, check_tensors, digest, json_object, read_file,
    tensors_sha256, tokenizer_files, tokenizer_from_files, versions,
)


def _tensors():
    return {
        "head.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4,
        "delta.x.indices": torch.tensor([0, 5, 7], dtype=torch.int64),
        "empty": torch.zeros(0, 4, dtype=torch.float16),
    }


def _metadata(**extra):
    return {"format": FORMAT, "format_version": str(FORMAT_VERSION), "params": '{"density": 0.01}', **extra}


def _linear():
    lin = torch.nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4)
        lin.bias.copy_(torch.tensor([0.5, -1.0]))
    return lin


# -- the pinned formats: a change here breaks every file saved before it ----------------------
def test_digest_is_pinned():
    assert digest(_tensors(), dict(_metadata(), digest="left out")) == (
        "1aa98eedd16a83d831917ca946c72457d1416a5d01fb7dee0b4eeb43ff4a5357"
    )


def test_digest_is_the_documented_formula():
    """SHA-256 of the sorted-key JSON metadata (digest left out), then per tensor in name order
    ``name|dtype|shape`` and its bytes."""
    tensors, meta = _tensors(), _metadata(digest="x")
    h = hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "digest"}, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    assert digest(tensors, meta) == h.hexdigest()


def test_backbone_fingerprint_is_pinned():
    assert backbone_fingerprint(_linear()) == "6de14b73461067b8fbf46be89bb3b124eec2ffdbf0886fe09341525af1cb2070"


def test_backbone_fingerprint_reads_float32_values_whatever_the_dtype():
    lin = _linear()
    before = backbone_fingerprint(lin)
    assert backbone_fingerprint(_linear().double()) == before  # loaded in float64: the same backbone
    with torch.no_grad():
        lin.weight[1, 2] += 1e-3
    assert backbone_fingerprint(lin) != before
    assert backbone_fingerprint(torch.nn.Linear(3, 2, bias=False)) != backbone_fingerprint(torch.nn.Linear(3, 2))


# -- tensors_sha256 ----------------------------------------------------------------------------
def test_tensors_sha256_does_not_depend_on_insertion_order():
    t = _tensors()
    assert tensors_sha256(t) == tensors_sha256(dict(reversed(list(t.items()))))


def test_tensors_sha256_changes_with_a_name_shape_dtype_or_byte():
    x = torch.arange(6, dtype=torch.int32)
    base = tensors_sha256({"x": x})
    assert tensors_sha256({"y": x}) != base
    assert tensors_sha256({"x": x.reshape(2, 3)}) != base  # same bytes, other shape
    assert tensors_sha256({"x": x.view(torch.float32)}) != base  # same bytes, other dtype
    changed = x.clone()
    changed[4] += 1
    assert tensors_sha256({"x": changed}) != base
    assert tensors_sha256({"x": x, "z": torch.zeros(0)}) != base  # an added empty tensor counts too
    assert tensors_sha256({"e": torch.zeros(0, 4)}) != tensors_sha256({"e": torch.zeros(4, 0)})


def test_tensors_sha256_without_dtype_ignores_only_the_dtype():
    x = torch.arange(6, dtype=torch.int32)
    base = tensors_sha256({"x": x}, with_dtype=False)
    assert tensors_sha256({"x": x.view(torch.float32)}, with_dtype=False) == base
    assert base != tensors_sha256({"x": x})
    assert tensors_sha256({"x": x.reshape(2, 3)}, with_dtype=False) != base
    assert tensors_sha256({"y": x}, with_dtype=False) != base
    assert tensors_sha256({"x": x + 1}, with_dtype=False) != base


def test_tensors_sha256_covers_the_header_and_reads_strided_tensors_as_laid_out():
    t = {"x": torch.arange(6.0).reshape(2, 3)}
    assert tensors_sha256(t, header=b"") == tensors_sha256(t)
    assert tensors_sha256(t, header=b"a") != tensors_sha256(t) != tensors_sha256(t, header=b"b")
    transposed = torch.arange(6.0).reshape(3, 2).T  # not contiguous
    assert tensors_sha256({"x": transposed}) == tensors_sha256({"x": transposed.contiguous()})


def test_digest_leaves_out_only_the_digest_field():
    t = _tensors()
    base = digest(t, _metadata())
    assert digest(t, _metadata(digest="anything")) == base
    assert digest(t, dict(reversed(list(_metadata().items())))) == base  # key order does not count
    assert digest(t, _metadata(params='{"density": 0.02}')) != base
    assert digest(t, _metadata(extra="")) != base
    assert digest({k: v for k, v in t.items() if k != "empty"}, _metadata()) != base


def test_versions_names_the_libraries_that_wrote_the_file():
    v = versions()
    assert set(v) == {"sksparseft", "torch", "transformers", "scikit-learn", "python"}
    assert v["sksparseft"] == sksparseft.__version__ and v["torch"] == torch.__version__


# -- read_file ---------------------------------------------------------------------------------
def _write(path, tensors=None, metadata=None, with_digest=True):
    tensors = _tensors() if tensors is None else tensors
    metadata = _metadata() if metadata is None else dict(metadata)
    if with_digest:
        metadata["digest"] = digest(tensors, metadata)
    save_file(tensors, str(path), metadata=metadata)
    return path


def test_read_file_gives_back_metadata_and_tensors(tmp_path):
    path = _write(tmp_path / "m.safetensors")
    metadata, tensors = read_file(str(path))
    assert metadata == dict(_metadata(), digest=digest(_tensors(), _metadata()))
    assert set(tensors) == set(_tensors())
    for name, t in _tensors().items():
        assert tensors[name].dtype == t.dtype and torch.equal(tensors[name], t)
    # A file of an older format version is read.
    _write(path, metadata=_metadata(format_version="0"))
    assert read_file(path)[0]["format_version"] == "0"


def test_read_file_of_no_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file at"):
        read_file(tmp_path / "absent.safetensors")
    with pytest.raises(FileNotFoundError):
        read_file(tmp_path)  # a folder


@pytest.mark.parametrize("data", [b"", b"not a safetensors file at all", b"\x08" + b"\x00" * 7 + b"{}garbage"])
def test_read_file_of_another_kind_of_file_is_a_model_file_error(tmp_path, data):
    path = tmp_path / "m.safetensors"
    path.write_bytes(data)
    with pytest.raises(ModelFileError, match="is not a readable sksparseft model file"):
        read_file(path)


@pytest.mark.parametrize("metadata, shown", [(None, "format=None"), ({"format": "other"}, "format='other'"),
                                             ({"format": "SKSPARSEFT"}, "format='SKSPARSEFT'")])
def test_read_file_of_a_safetensors_file_of_another_format_names_it(tmp_path, metadata, shown):
    path = tmp_path / "m.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata=metadata)
    with pytest.raises(ModelFileError, match="is a safetensors file but not a sksparseft model") as info:
        read_file(path)
    assert shown in str(info.value)


def test_read_file_of_a_newer_format_says_upgrade(tmp_path):
    path = tmp_path / "m.safetensors"
    newer = str(FORMAT_VERSION + 1)
    _write(path, metadata=_metadata(format_version=newer, versions=json.dumps({"sksparseft": "9.9.0"})))
    with pytest.raises(ModelFileError, match="upgrade sksparseft to load it") as info:
        read_file(path)
    assert f"format {newer}, written by sksparseft 9.9.0" in str(info.value)
    _write(path, metadata=_metadata(format_version=newer))  # no versions field
    with pytest.raises(ModelFileError, match="written by sksparseft a newer version"):
        read_file(path)


@pytest.mark.parametrize("version", ["", "one", "1.0"])
def test_read_file_of_an_unreadable_format_version(tmp_path, version):
    path = _write(tmp_path / "m.safetensors", metadata=_metadata(format_version=version))
    with pytest.raises(ModelFileError, match="unreadable format_version"):
        read_file(path)


def test_read_file_refuses_a_tampered_byte_or_field(tmp_path):
    path = _write(tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # one bit of tensor data
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="fails its integrity check"):
        read_file(bad)
    meta = dict(_metadata(), digest=digest(_tensors(), _metadata()))
    meta["params"] = '{"density": 0.5}'  # a field changed, the digest not
    _write(bad, metadata=meta, with_digest=False)
    with pytest.raises(ModelFileError, match="fails its integrity check"):
        read_file(bad)
    _write(bad, with_digest=False)  # no digest at all
    with pytest.raises(ModelFileError, match="fails its integrity check"):
        read_file(bad)


# -- json_object --------------------------------------------------------------------------------
def test_json_object_reads_an_object_field_or_says_what_is_wrong():
    assert json_object("p", {"params": '{"a": 1}'}, "params") == {"a": 1}
    with pytest.raises(ModelFileError, match="lacks its 'params' metadata"):
        json_object("p", {}, "params")
    for text in ("{", "[" * 100_000 + "]" * 100_000):
        with pytest.raises(ModelFileError, match="'params' metadata is not readable JSON"):
            json_object("p", {"params": text}, "params")
    with pytest.raises(ModelFileError, match="'params' metadata is a list, not an object"):
        json_object("p", {"params": "[1]"}, "params")


# -- tokenizer files ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


TEXTS = ["My card has not arrived, Ünïcode 12345!", "refund http://x.io [SEP] pin"]


def test_tokenizer_files_round_trip(tokenizer):
    files = tokenizer_files(tokenizer)
    assert files and all(set(v) in ({"text"}, {"base64"}) for v in files.values())
    json.dumps(files)  # what the file's metadata holds
    back = tokenizer_from_files("m.safetensors", files)
    assert back.get_vocab() == tokenizer.get_vocab()
    assert back(TEXTS)["input_ids"] == tokenizer(TEXTS)["input_ids"]
    long = " ".join(TEXTS * 20)
    assert (back(long, truncation=True, max_length=16)["input_ids"]
            == tokenizer(long, truncation=True, max_length=16)["input_ids"])
    assert set(tokenizer_files(back)) == set(files)


def test_tokenizer_files_in_base64_are_decoded(tokenizer):
    import base64

    files = tokenizer_files(tokenizer)
    encoded = {name: {"base64": base64.b64encode(c["text"].encode()).decode("ascii")} for name, c in files.items()}
    back = tokenizer_from_files("m.safetensors", encoded)
    assert back(TEXTS)["input_ids"] == tokenizer(TEXTS)["input_ids"]


@pytest.mark.parametrize("name", ["../tokenizer.json", "sub/tokenizer.json", "/etc/passwd", "sub\\vocab.txt",
                                  "", ".", ".."])
def test_a_tokenizer_file_name_that_is_not_a_plain_name_is_refused(tokenizer, name):
    files = dict(tokenizer_files(tokenizer), **{name: {"text": "x"}})
    with pytest.raises(ModelFileError, match="is not a plain file name"):
        tokenizer_from_files("m.safetensors", files)


def test_unreadable_tokenizer_files_are_a_model_file_error(tokenizer):
    files = tokenizer_files(tokenizer)
    files["tokenizer.json"] = {"text": "{not json"}
    with pytest.raises(ModelFileError, match="m.safetensors: the tokenizer files in the model file are not readable"):
        tokenizer_from_files("m.safetensors", files)


# -- check_tensors --------------------------------------------------------------------------------
TRAINED = "encoder.layer.0.attention.self.query.weight"
DELTA = "encoder.layer.1.output.dense.weight"


@pytest.fixture(scope="module")
def module(tiny_model):
    return tiny_module(tiny_model)[1]


def _good(module):
    params = dict(module.encoder.named_parameters())
    n = params[DELTA].numel()
    return {
        "head.weight": module.head.weight.detach().clone(),
        "head.bias": module.head.bias.detach().clone(),
        f"tensor.{TRAINED}": params[TRAINED].detach().clone(),
        f"delta.{DELTA}.indices": torch.tensor([0, 7, n - 1], dtype=torch.int32),
        f"delta.{DELTA}.values": torch.tensor([0.5, -0.5, 1.0]),
    }


def test_check_tensors_gives_the_delta_of_fitting_tensors(module):
    delta = check_tensors("m", module, _good(module), {TRAINED}, included=False)
    assert list(delta) == [DELTA]
    idx, vals = delta[DELTA]
    assert idx.dtype == torch.int64 and idx.tolist() == [0, 7, module.encoder.state_dict()[DELTA].numel() - 1]
    assert vals.tolist() == [0.5, -0.5, 1.0]
    # An included backbone's tensors are accepted when the file says it includes it.
    state = module.encoder.state_dict()
    with_backbone = dict(_good(module), **{f"backbone.{k}": v.clone() for k, v in state.items()})
    assert list(check_tensors("m", module, with_backbone, {TRAINED}, included=True)) == [DELTA]
    with pytest.raises(ModelFileError, match="unexpected tensor backbone."):
        check_tensors("m", module, with_backbone, {TRAINED}, included=False)


def _set(key, value):
    return lambda tensors: tensors.update({key: value})


def _drop(key):
    return lambda tensors: tensors.pop(key)


_N = 64 * 32  # entries of DELTA in the tiny model (hidden 32, intermediate 64)
CHANGES = {
    "unexpected key": (_set("extra.weight", torch.zeros(1)), "unexpected tensor extra.weight"),
    "head of the wrong shape": (_set("head.weight", torch.zeros(2, 32)), r"head.weight is torch.float32 \(2, 32\), "
                                                                        r"the model needs torch.float32 \(3, 32\)"),
    "head of the wrong dtype": (_set("head.bias", torch.zeros(3, dtype=torch.float64)), "head.bias is torch.float64"),
    "no head": (_drop("head.bias"), "lacks the head"),
    "untrained tensor": (_set("tensor.encoder.layer.1.attention.self.key.weight", torch.zeros(32, 32)),
                         "names no trained tensor"),
    "trained tensor of the wrong shape": (_set(f"tensor.{TRAINED}", torch.zeros(32, 31)), f"tensor.{TRAINED} is"),
    "delta of an unknown tensor": (_set("delta.nothing.weight.indices", torch.zeros(1, dtype=torch.int64)),
                                   "a delta for nothing.weight, which the backbone lacks"),
    "delta without values": (_drop(f"delta.{DELTA}.values"), "lacks its values"),
    "delta without indices": (_drop(f"delta.{DELTA}.indices"), "lacks its indices"),
    "index past the end": (_set(f"delta.{DELTA}.indices", torch.tensor([0, 7, _N], dtype=torch.int32)),
                           rf"indices outside 0..{_N - 1} or repeated"),
    "negative index": (_set(f"delta.{DELTA}.indices", torch.tensor([-1, 7, 8])), "indices outside"),
    "repeated index": (_set(f"delta.{DELTA}.indices", torch.tensor([7, 7, 8])), "or repeated"),
    "float indices": (_set(f"delta.{DELTA}.indices", torch.tensor([0.0, 1.0, 2.0])), "1-D integer indices"),
    "2-D indices": (_set(f"delta.{DELTA}.indices", torch.tensor([[0, 1, 2]])), "1-D integer indices"),
    "values of another dtype": (_set(f"delta.{DELTA}.values", torch.zeros(3, dtype=torch.float16)), "float32 values"),
    "fewer values than indices": (_set(f"delta.{DELTA}.values", torch.zeros(2)), "1-D integer indices"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_check_tensors_refuses_what_does_not_fit_the_module(module, change):
    alter, message = CHANGES[change]
    tensors = _good(module)
    alter(tensors)
    with pytest.raises(ModelFileError, match=message) as info:
        check_tensors("m.safetensors", module, tensors, {TRAINED}, included=False)
    assert str(info.value).startswith("m.safetensors: ")


def test_the_tiny_delta_tensor_has_the_size_the_cases_assume(module):
    assert dict(module.encoder.named_parameters())[DELTA].numel() == _N
