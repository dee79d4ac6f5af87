"""Faults and odd input: each gets a clear error before training, or a documented handling."""

import numpy as np
import pytest
import torch

from cases import FAST as BASE
from sksparseft import TokenSparseClassifier
from sksparseft.model.module import ClassifierModule


FAST = dict(BASE, random_state=0)


@pytest.fixture(scope="module")
def fitted(tiny_model, toy_data):
    X, y = toy_data
    return TokenSparseClassifier(tiny_model, **FAST).fit(X, y)


def test_odd_but_valid_texts_are_handled(fitted):
    odd = [
        "", "   \t\n", "x" * 100_000, "🙂🎉 emoji only", "مرحبا بالعالم", "שלום", "zero\u200bwidth\u200d",
        "e\u0301\u0301 combining", "control\x00\x07\x1b chars", "lone \ud800 surrogate", "\U0001F600" * 500,
    ]
    proba = fitted.predict_proba(odd)
    assert proba.shape == (len(odd), 3)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)


def test_generator_and_odd_texts_in_fit(tiny_model, toy_data):
    X, y = toy_data
    X = list(X)
    X[0], X[1], X[2] = "", "\ud83d broken", "x" * 100_000
    clf = TokenSparseClassifier(tiny_model, **FAST).fit((t for t in X), y)
    assert clf.predict(iter(["my card"])).shape == (1,)


@pytest.mark.parametrize("bad,exc,match", [
    ([b"bytes"], TypeError, "bytes"),
    ([{"text": "a"}], TypeError, "dict"),
    ([1.5], TypeError, "float"),
    ([float("nan")], ValueError, "missing"),
    (None, TypeError, "None"),
    (42, TypeError, "int"),
])
def test_bad_texts_at_predict(fitted, bad, exc, match):
    with pytest.raises(exc, match=match):
        fitted.predict(bad)


def test_mixed_label_types_are_rejected(tiny_model, toy_data):
    X, _ = toy_data
    y = ["a", 1] * (len(X) // 2)
    with pytest.raises(TypeError, match="mixes"):
        TokenSparseClassifier(tiny_model, **FAST).fit(X, y)


def test_unseen_labels_in_score_count_as_errors(fitted, toy_data):
    X, y = toy_data
    assert fitted.score(X[:4], ["never-seen"] * 4) == 0.0


def test_not_a_text_encoder(tmp_path, toy_data):
    X, y = toy_data
    (tmp_path / "config.json").write_text('{"model_type": "resnet", "num_channels": 3}')
    with pytest.raises(ValueError, match="model="):
        TokenSparseClassifier(str(tmp_path), **FAST).fit(X, y)


def test_keyboard_interrupt_keeps_a_usable_estimator(tiny_model, toy_data, monkeypatch):
    X, y = toy_data
    calls = {"n": 0}
    original = ClassifierModule.forward

    def interrupt_in_epoch_two(self, *args, **kwargs):
        if self.training:
            calls["n"] += 1
            if calls["n"] == 8:  # 5 train batches per epoch: stops during epoch 2
                raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ClassifierModule, "forward", interrupt_in_epoch_two)
    with pytest.warns(UserWarning, match="interrupted"):
        clf = TokenSparseClassifier(tiny_model, **{**FAST, "max_epochs": 5}).fit(X, y)
    assert clf.interrupted_
    assert len(clf.history_) <= 3  # probe row + at most the started epochs
    assert clf.predict(X).shape == (len(X),)


def test_cuda_out_of_memory_says_what_to_set(tiny_model, toy_data, monkeypatch):
    X, y = toy_data

    def oom(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(ClassifierModule, "forward", oom)
    with pytest.raises(MemoryError, match="batch_size=8"):
        TokenSparseClassifier(tiny_model, **{**FAST, "head_init": "random"}).fit(X, y)


def test_loading_never_runs_remote_code(monkeypatch, tiny_model):
    import transformers

    seen = []
    original = transformers.AutoModel.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", spy)
    from sksparseft.model.backbone import load_backbone

    load_backbone(tiny_model)
    assert seen == [False]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is missing")
def test_cuda_requested_without_cuda_fails_before_loading(toy_data, monkeypatch):
    X, y = toy_data

    def never(*args, **kwargs):
        raise AssertionError("the backbone must not be loaded")

    monkeypatch.setattr(TokenSparseClassifier, "stage_load", never)
    with pytest.raises(ValueError, match="device='cuda'.*CUDA is not available"):
        TokenSparseClassifier(**{**FAST, "device": "cuda"}).fit(X, y)
