"""Adaptive tokenization: new whole-word tokens, their embedding rows, and fits that carry them."""

import pickle

import numpy as np
import pytest
import torch

from cases import FAST as BASE
from sksparseft import TokenSparseClassifier
from sksparseft.model.backbone import load_backbone
from sksparseft.text.tokens import TokenGroup
from sksparseft.text.vocabulary import AddedToken, extend_embeddings, extend_tokenizer, merge_groups


FAST = dict(BASE, random_state=0, validation_fraction=0.0)


@pytest.fixture(scope="module")
def tokenizer():
    return load_backbone("all-MiniLM-L6-v2")[0]


def group(tokenizer, text, score=1.0):
    ids = tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
    return TokenGroup(text, ids, score, "x", 3)


@pytest.fixture(scope="module")
def word_data():
    """Two intents whose cue words are several word pieces each ("overdraft", "cheque")."""
    texts, labels = [], []
    for i in range(8):
        tail = ["now", "today", "please", "again"][i % 4]
        texts += [f"my overdraft fee is wrong {tail}", f"why is there an overdraft {tail}", f"overdraft limit question {tail}"]
        labels += ["overdraft"] * 3
        texts += [f"how do i deposit a cheque {tail}", f"my cheque bounced {tail}", f"cheque not cleared {tail}"]
        labels += ["cheque"] * 3
    return texts, labels


def test_split_words_become_whole_word_tokens(tokenizer):
    texts = ["my overdraft fee", "an overdraft", "overdraft again", "overdrafts are bad", "OVERDRAFT", "top up now", "top up"]
    groups = [group(tokenizer, "overdraft"), group(tokenizer, "top up"), group(tokenizer, "fee")]
    assert len(groups[0].token_ids) == 3 and len(groups[1].token_ids) == 2 and len(groups[2].token_ids) == 1
    n_before = len(tokenizer)
    extended, added = extend_tokenizer(tokenizer, groups, texts, min_count=2, max_length=32)
    assert len(tokenizer) == n_before  # the original is left alone
    # Phrases and single tokens are not candidates: only the split word is added.
    assert [a.text for a in added] == ["overdraft"]
    assert added[0].token_id == n_before and added[0].pieces == groups[0].token_ids
    assert added[0].count == 4  # matched on normalised text: "OVERDRAFT" counts
    ids = extended("my overdraft fee", add_special_tokens=False)["input_ids"]
    assert ids == [tokenizer.convert_tokens_to_ids("my"), n_before, tokenizer.convert_tokens_to_ids("fee")]
    # Whole words only: inside a longer word the pieces stay.
    assert n_before not in extended("overdrafts", add_special_tokens=False)["input_ids"]


def test_rare_overlapping_and_partial_candidates_are_not_added(tokenizer):
    texts = ["overdraft fee", "overdraft now", "the overdraft", "overdrafted", "cheque", "cheque please", "xylophone"]
    over, dra = group(tokenizer, "overdraft", 3.0), group(tokenizer, "overdrafted", 2.5)
    partial = TokenGroup("overdra", over.token_ids[:2], 2.0, "x", 3)  # pieces of a word, never a word
    tail = TokenGroup("##draft", over.token_ids[1:], 1.8, "x", 3)  # starts inside a word
    groups = [over, dra, partial, tail, group(tokenizer, "cheque", 1.5), group(tokenizer, "xylophone", 1.0)]
    _, added = extend_tokenizer(tokenizer, groups, texts, min_count=2, max_length=32)
    # "overdrafted" shares its first pieces with the better "overdraft"; "xylophone" occurs once.
    assert [a.text for a in added] == ["overdraft", "cheque"]
    assert [a.count for a in added] == [3, 2]


def test_nothing_to_add_returns_the_same_tokenizer(tokenizer):
    extended, added = extend_tokenizer(tokenizer, [group(tokenizer, "fee")], ["fee"], min_count=1, max_length=8)
    assert extended is tokenizer and added == []


def test_new_rows_start_as_the_mean_of_their_pieces(tiny_model):
    _, encoder, _ = load_backbone(tiny_model)
    before = encoder.get_input_embeddings().weight.detach().clone()
    added = [AddedToken("overdraft", before.shape[0], (2058, 7265, 6199), 3), AddedToken("top up", before.shape[0] + 1, (2327, 2039), 3)]
    extend_embeddings(encoder, added)
    after = encoder.get_input_embeddings().weight.detach()
    assert after.shape == (before.shape[0] + 2, before.shape[1])
    assert encoder.config.vocab_size == before.shape[0] + 2
    torch.testing.assert_close(after[: before.shape[0]], before, rtol=0, atol=0)
    torch.testing.assert_close(after[-2], before[[2058, 7265, 6199]].mean(0))
    torch.testing.assert_close(after[-1], before[[2327, 2039]].mean(0))


def test_merge_groups_points_groups_at_their_new_token():
    groups = [TokenGroup("cheque", (1, 2), 2.0, "a", 3), TokenGroup("fee", (5,), 1.0, "b", 3)]
    merged = merge_groups(groups, [AddedToken("cheque", 99, (1, 2), 3)])
    assert merged[0].token_ids == (99,) and merged[0].pieces == (1, 2) and merged[0].text == "cheque"
    assert merged[1] == groups[1]


@pytest.fixture(scope="module")
def fitted_at(tiny_model, word_data):
    X, y = word_data
    # token_sparse trains the groups' embedding rows, so the new tokens' rows train too.
    return TokenSparseClassifier(tiny_model, strategy="token_sparse", adaptive_tokenization=True, **FAST).fit(X, y)


def test_fit_adds_tokens_and_trains_their_rows(fitted_at, tiny_model, word_data):
    clf = fitted_at
    texts = {a.text for a in clf.added_tokens_}
    assert {"overdraft", "cheque"} <= texts
    n_base = load_backbone(tiny_model)[1].get_input_embeddings().weight.shape[0]
    new_ids = [a.token_id for a in clf.added_tokens_]
    assert min(new_ids) == n_base and len(clf.tokenizer_) == n_base + len(new_ids)
    # The fitted tokenizer reads the word as its new token; the groups point at it.
    over = next(a for a in clf.added_tokens_ if a.text == "overdraft")
    assert over.token_id in clf.tokenizer_("overdraft fee")["input_ids"]
    merged = [g for g in clf.token_groups_ if g.pieces]
    assert any(g.token_ids == (over.token_id,) and g.pieces == over.pieces for g in merged)
    # Its embedding row was trainable and moved away from the mean of its pieces.
    emb_name = next(n for n, p in clf.module_.encoder.named_parameters() if p is clf.module_.encoder.get_input_embeddings().weight)
    hidden = clf.module_.encoder.config.hidden_size
    rows = set((clf.mask_.indices[emb_name] // hidden).tolist())
    assert set(new_ids) <= rows
    _, base, _ = load_backbone(tiny_model)
    start = base.get_input_embeddings().weight[list(over.pieces)].mean(0)
    assert not torch.allclose(clf.module_.encoder.get_input_embeddings().weight[over.token_id], start)
    X, y = word_data
    assert clf.score(X, y) > 0.9


def test_rows_outside_the_mask_are_untouched(fitted_at, tiny_model):
    clf = fitted_at
    _, base, _ = load_backbone(tiny_model)
    extend_embeddings(base, clf.added_tokens_)
    base_params = dict(base.named_parameters())
    for name, p in clf.module_.encoder.named_parameters():
        frozen = ~clf.mask_.dense(name) if name in clf.mask_.shapes else torch.ones_like(p, dtype=torch.bool)
        assert torch.equal(p.detach()[frozen], base_params[name].detach()[frozen]), name


@pytest.mark.parametrize("include_backbone", [False, True])
def test_save_load_rebuilds_the_new_tokens(fitted_at, word_data, tmp_path, include_backbone):
    X, _ = word_data
    path = fitted_at.save(tmp_path / "m.safetensors", include_backbone=include_backbone)
    loaded = TokenSparseClassifier.load(path)
    assert loaded.added_tokens_ == fitted_at.added_tokens_
    assert loaded.token_groups_ == fitted_at.token_groups_
    assert len(loaded.tokenizer_) == len(fitted_at.tokenizer_)
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted_at.predict_proba(X))


def test_pickle_round_trip(fitted_at, word_data):
    X, _ = word_data
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted_at)).predict_proba(X), fitted_at.predict_proba(X))


def test_off_by_default_and_validated(tiny_model, word_data):
    X, y = word_data
    clf = TokenSparseClassifier(tiny_model, **FAST).fit(X, y)
    assert clf.added_tokens_ == [] and all(not g.pieces for g in clf.token_groups_)
    assert len(clf.tokenizer_) == len(load_backbone(tiny_model)[0])
    with pytest.raises(ValueError, match="adaptive_tokenization"):
        TokenSparseClassifier(tiny_model, adaptive_tokenization="yes", **FAST).fit(X, y)


def test_every_strategy_accepts_the_new_tokens(tiny_model, word_data):
    X, y = word_data
    for strategy in ("full", "lora"):
        clf = TokenSparseClassifier(tiny_model, strategy=strategy, adaptive_tokenization=True, **FAST).fit(X, y)
        assert clf.added_tokens_
        assert clf.predict_proba(X).shape == (len(X), 2)
