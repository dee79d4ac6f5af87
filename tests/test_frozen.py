"""The frozen backbone's work in a fit (sksparseft/fit/frozen.py): ``memory`` keeps it across fits, never stale."""

import joblib
import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV

from cases import FAST
from sksparseft import TokenSparseClassifier
from sksparseft.fit import frozen
from sksparseft.model.layout import transformer_blocks
from sksparseft.model.frozen_store import FOLDER

CACHED = dict(FAST, strategy="layers", strategy_options={"n_layers": 1, "cache_frozen": True}, random_state=0)


def _entries(folder):
    return {p.parent.parent.name: len(list(p.parent.parent.glob("*/*.pt")))
            for p in (folder / FOLDER).glob("*/*/*.pt")} if (folder / FOLDER).exists() else {}


@pytest.fixture
def spy(monkeypatch):
    """How many texts each fit took from memory (block cache rows given by the store)."""
    given = []
    fill = frozen.fill_block_cache

    def record(module, store, encodings, device):
        keys = fill(module, store, encodings, device)
        given.append(len(keys))
        return keys

    monkeypatch.setattr(frozen, "fill_block_cache", record)
    return given


def test_a_fit_keeps_its_frozen_outputs_and_the_next_fit_reuses_them(tiny_model, toy_data, tmp_path, spy):
    X, y = toy_data
    plain = TokenSparseClassifier(tiny_model, **CACHED).fit(X, y)
    first = TokenSparseClassifier(tiny_model, memory=tmp_path, **CACHED).fit(X, y)
    stored = _entries(tmp_path)
    assert sorted(stored.values()) == [len(set(X))] * 2  # the block cache's rows and the probe's features
    second = TokenSparseClassifier(tiny_model, memory=tmp_path, **CACHED).fit(X, y)
    assert spy == [0, len(set(X))] and _entries(tmp_path) == stored  # all from memory, nothing new
    # An empty memory changes nothing; a full one gives the rows this fit would compute.
    np.testing.assert_array_equal(first.predict_proba(X), plain.predict_proba(X))
    np.testing.assert_allclose(second.predict_proba(X), plain.predict_proba(X), atol=1e-5)


def test_another_fold_or_candidate_reuses_what_it_shares(tiny_model, toy_data, tmp_path, spy):
    X, y = toy_data
    TokenSparseClassifier(tiny_model, memory=joblib.Memory(tmp_path, verbose=0), **CACHED).fit(X[::2], y[::2])
    TokenSparseClassifier(tiny_model, memory=str(tmp_path), **dict(CACHED, learning_rate=1e-3)).fit(X, y)
    assert spy == [0, len(set(X[::2]))]  # the shared half came from memory


def test_nothing_stale_is_reused(tiny_model, tiny_decoder, toy_data, tmp_path):
    X, y = toy_data
    TokenSparseClassifier(tiny_model, memory=tmp_path, **CACHED).fit(X, y)
    before = _entries(tmp_path)
    TokenSparseClassifier(tiny_model, memory=tmp_path, **dict(CACHED, max_length=4)).fit(X, y)  # other tokens
    after_length = _entries(tmp_path)
    assert set(after_length) == set(before) and sum(after_length.values()) > sum(before.values())
    TokenSparseClassifier(tiny_model, memory=tmp_path, **dict(CACHED, pooling="cls")).fit(X, y)  # other features
    TokenSparseClassifier(tiny_decoder, memory=tmp_path, **CACHED).fit(X, y)  # another backbone
    assert len(_entries(tmp_path)) == len(before) + 3  # cls features; the decoder's rows and features


def test_what_bf16_passes_computed_is_kept_apart(tiny_model, toy_data, tmp_path, spy):
    X, y = toy_data
    TokenSparseClassifier(tiny_model, memory=tmp_path, precision="float32", **CACHED).fit(X, y)
    before = _entries(tmp_path)
    TokenSparseClassifier(tiny_model, memory=tmp_path, precision="bfloat16", **CACHED).fit(X, y)
    after = _entries(tmp_path)
    assert spy == [0, 0] and len(after) == len(before) + 2  # its own block rows and probe features


def test_memory_is_not_part_of_the_model_file(tiny_model, toy_data, tmp_path):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_model, memory=joblib.Memory(tmp_path / "m", verbose=0), **CACHED).fit(X, y)
    back = TokenSparseClassifier.load(clf.save(tmp_path / "model.safetensors"), device="cpu")
    assert back.memory is None
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))


def test_a_search_shares_one_memory(tiny_model, toy_data, tmp_path, spy):
    X, y = toy_data
    search = GridSearchCV(TokenSparseClassifier(tiny_model, memory=tmp_path, **dict(CACHED, max_epochs=1)),
                          {"learning_rate": [1e-3, 1e-2]}, cv=2).fit(X, y)
    assert search.best_estimator_.memory == tmp_path
    # Every text is computed once: from the second fit on, every text of a fold comes from memory.
    assert spy[0] == 0 and all(n > 0 for n in spy[1:]) and spy[-1] == len(set(X))


def test_an_empty_memory_changes_nothing_with_rejection_too(tiny_model, toy_data, tmp_path):
    X, y = toy_data
    y = np.where(np.arange(len(y)) % 7 == 0, "oos", y)  # some labelled out-of-scope texts
    settings = dict(CACHED, unknown_label="oos")
    plain = TokenSparseClassifier(tiny_model, **settings).fit(X, y)
    kept = TokenSparseClassifier(tiny_model, memory=tmp_path, **settings).fit(X, y)
    assert kept.unknown_threshold_ == plain.unknown_threshold_
    np.testing.assert_array_equal(kept.predict_proba(X), plain.predict_proba(X))
    np.testing.assert_array_equal(kept.rejection_score(X), plain.rejection_score(X))


# The contrastive stage trains every block; the cross-entropy epochs only block 1 and up.
AFTER_CONTRASTIVE = dict(FAST, strategy="random", density=0.01, contrastive_epochs=1, random_state=0,
                         strategy_options={"ce_min_layer": 1})


class _Watched(TokenSparseClassifier):
    """Keeps the backbone's values around the cross-entropy stage and counts block 0's runs after the block cache filled."""

    def stage_contrastive(self, state):
        self.start_ = _backbone_values(state.module)
        super().stage_contrastive(state)

    def _freeze_for_training(self, state):
        super()._freeze_for_training(state)
        self.before_ = _backbone_values(state.module)
        self.block0_runs_ = []
        block0 = transformer_blocks(state.module.encoder)[0]
        block0.attention.register_forward_hook(lambda *args: self.block0_runs_.append(1))

    def stage_training(self, state):
        super().stage_training(state)
        self.after_ = _backbone_values(state.module)


def _backbone_values(module):
    return {n: p.detach().clone() for n, p in module.named_parameters() if not n.startswith("head.")}


def test_after_the_contrastive_stage_the_blocks_below_ce_min_layer_keep_their_values(tiny_model, toy_data):
    X, y = toy_data
    clf = _Watched(tiny_model, **AFTER_CONTRASTIVE).fit(X, y)
    below = [n for n in clf.before_ if "layer.1" not in n.replace("__", ".")]
    above = [n for n in clf.before_ if n not in below]
    assert below and above
    # The contrastive stage moved entries below block 1; the cross-entropy epochs left them there.
    assert any(not torch.equal(clf.start_[n], clf.before_[n]) for n in below)
    for n in below:
        assert torch.equal(clf.before_[n], clf.after_[n]), n
    assert any(not torch.equal(clf.before_[n], clf.after_[n]) for n in above)
    # Epochs, validation, interpolation and head refit all read block 0's output from the cache.
    assert clf.block0_runs_ == []
    assert clf.finetuned_ and clf.score(X, y) > 0.5


def test_ce_min_layer_is_checked_against_min_layer_and_the_blocks(tiny_model, toy_data):
    X, y = toy_data
    with pytest.raises(ValueError, match="ce_min_layer=1 must be above min_layer=1"):
        TokenSparseClassifier(tiny_model, **dict(AFTER_CONTRASTIVE, strategy_options={"min_layer": 1,
                                                                                      "ce_min_layer": 1})).fit(X, y)
    with pytest.raises(ValueError, match="ce_min_layer=2 leaves no transformer block to train in the cross-entropy"):
        TokenSparseClassifier(tiny_model, **dict(AFTER_CONTRASTIVE, strategy_options={"ce_min_layer": 2})).fit(X, y)
    with pytest.raises(ValueError, match="ce_min_layer needs a contrastive stage"):
        TokenSparseClassifier(tiny_model, **dict(AFTER_CONTRASTIVE, contrastive_epochs=0)).fit(X, y)


def test_rows_of_trained_blocks_never_reach_memory(tiny_model3, toy_data, tmp_path, spy):
    """With a pretrained prefix in memory (min_layer) and ce_min_layer above it, memory keeps the prefix only."""
    X, y = toy_data
    settings = dict(AFTER_CONTRASTIVE, strategy_options={"min_layer": 1, "cache_frozen": True, "ce_min_layer": 2})
    plain = TokenSparseClassifier(tiny_model3, **settings).fit(X, y)
    first = TokenSparseClassifier(tiny_model3, memory=tmp_path, **settings).fit(X, y)
    second = TokenSparseClassifier(tiny_model3, memory=tmp_path, **settings).fit(X, y)
    assert spy == [0, len(set(X))]  # the second fit took the input of block 1 from memory
    assert sorted(_entries(tmp_path).values()) == [len(set(X))] * 2  # block 1's input and the probe's features only
    np.testing.assert_array_equal(first.predict_proba(X), plain.predict_proba(X))
    np.testing.assert_allclose(second.predict_proba(X), plain.predict_proba(X), atol=1e-5)
