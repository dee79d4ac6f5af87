"""save/load: same predictions, atomic writes, clear errors on bad files."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import safe_open, save_file

from cases import FAST as BASE
from sksparseft import TokenSparseClassifier
from sksparseft.io.model_file import FORMAT_VERSION, ModelFileError, digest as _digest


FAST = dict(BASE, random_state=0, validation_fraction=0.0, learning_rate=1e-2)


@pytest.fixture(scope="module")
def fitted(tiny_model, toy_data):
    X, y = toy_data
    return TokenSparseClassifier(tiny_model, **FAST).fit(X, y)


def _rewrite(path, out, metadata_update=None, digest=True):
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(metadata_update or {})
    if digest:
        meta["digest"] = _digest(tensors, meta)
    save_file(tensors, str(out), metadata=meta)


def test_round_trip_predicts_identically_and_keeps_fitted_state(fitted, toy_data, tmp_path):
    X, _ = toy_data
    path = fitted.save(tmp_path / "m.safetensors")
    loaded = TokenSparseClassifier.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    assert loaded.get_params() == fitted.get_params()
    assert list(loaded.classes_) == list(fitted.classes_) and loaded.classes_.dtype == fitted.classes_.dtype
    assert loaded.token_groups_ == fitted.token_groups_
    assert loaded.mask_.n_selected == fitted.mask_.n_selected
    assert all(torch.equal(loaded.mask_.indices[n], fitted.mask_.indices[n]) for n in fitted.mask_.indices)
    assert loaded.history_ == json.loads(json.dumps(fitted.history_))
    assert loaded.mask_summary_ == fitted.mask_summary_


def test_integer_labels_keep_their_type(tiny_model, toy_data, tmp_path):
    X, y = toy_data
    y_int = np.unique(y, return_inverse=True)[1] * 10 + 3
    clf = TokenSparseClassifier(tiny_model, **dict(FAST, max_epochs=1)).fit(X, y_int)
    loaded = TokenSparseClassifier.load(clf.save(tmp_path / "m.safetensors"))
    assert loaded.classes_.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_delta_file_is_a_small_fraction_of_the_backbone_file(fitted, tmp_path):
    small = os.path.getsize(fitted.save(tmp_path / "delta.safetensors"))
    big = os.path.getsize(fitted.save(tmp_path / "full.safetensors", include_backbone=True))
    assert small < 0.5 * big


def test_included_backbone_loads_without_the_model_folder(tiny_model, toy_data, tmp_path):
    X, y = toy_data
    folder = tmp_path / "backbone"
    shutil.copytree(tiny_model, folder)
    clf = TokenSparseClassifier(str(folder), **dict(FAST, max_epochs=1)).fit(X, y)
    path = clf.save(tmp_path / "m.safetensors", include_backbone=True)
    shutil.rmtree(folder)
    np.testing.assert_allclose(TokenSparseClassifier.load(path).predict_proba(X), clf.predict_proba(X), atol=1e-6)


def test_a_changed_backbone_is_refused(tiny_model, toy_data, tmp_path):
    from transformers import BertModel

    X, y = toy_data
    folder = tmp_path / "backbone"
    shutil.copytree(tiny_model, folder)
    clf = TokenSparseClassifier(str(folder), **dict(FAST, max_epochs=1)).fit(X, y)
    path = clf.save(tmp_path / "m.safetensors")
    model = BertModel.from_pretrained(folder)
    with torch.no_grad():
        model.encoder.layer[0].output.dense.weight.add_(0.01)
    model.save_pretrained(folder)
    with pytest.raises(ModelFileError, match="different backbone"):
        TokenSparseClassifier.load(path)


def test_truncated_file_is_refused(fitted, tmp_path):
    path = fitted.save(tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupted"):
        TokenSparseClassifier.load(path)


def test_tampered_tensor_or_metadata_is_refused(fitted, tmp_path):
    path = fitted.save(tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # a byte of tensor data
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="integrity check"):
        TokenSparseClassifier.load(bad)
    # metadata changed without recomputing the digest (e.g. other parameters injected)
    params = json.loads(safe_open(str(path), framework="pt").metadata()["params"])
    params["max_length"] = 7
    _rewrite(path, bad, {"params": json.dumps(params)}, digest=False)
    with pytest.raises(ModelFileError, match="integrity check"):
        TokenSparseClassifier.load(bad)


def test_newer_format_and_foreign_files_are_refused(fitted, tmp_path):
    path = fitted.save(tmp_path / "m.safetensors")
    newer = tmp_path / "newer.safetensors"
    _rewrite(path, newer, {"format_version": str(FORMAT_VERSION + 1)})
    with pytest.raises(ModelFileError, match="upgrade sksparseft"):
        TokenSparseClassifier.load(newer)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(ModelFileError, match="not a sksparseft model"):
        TokenSparseClassifier.load(foreign)
    with pytest.raises(FileNotFoundError):
        TokenSparseClassifier.load(tmp_path / "absent.safetensors")


def test_a_failed_save_leaves_the_previous_file_intact(fitted, toy_data, tmp_path, monkeypatch):
    import safetensors.torch

    X, _ = toy_data
    path = fitted.save(tmp_path / "m.safetensors")
    before = path.read_bytes()

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        fitted.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temporary left
    monkeypatch.undo()
    np.testing.assert_array_equal(TokenSparseClassifier.load(path).predict(X), fitted.predict(X))


def test_unfitted_model_cannot_be_saved(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        TokenSparseClassifier().save(tmp_path / "m.safetensors")
