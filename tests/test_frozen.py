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


# -- nothing stale: what changes the frozen backbone's outputs changes what memory gives ---------------
CONTEXTS = ["now", "today", "please", "again", "for me", "help", "question", "issue"]
# Words the tokenizer splits (over + ##dra + ##ft...): adaptive tokenization makes each one token. The two
# sets get the same new ids (30522, 30523, 30524) in the same texts: the same token ids, other words.
SPLIT_WORDS = {"first": ("overdraft", "chargeback", "cardholder"), "second": ("remittance", "cashback", "contactless")}


def _split_word_data(words):
    """Three classes, each told by one split word before a context the classes share."""
    return [f"{w} {c}" for w in words for c in CONTEXTS] * 2, [label for label in "abc" for _ in CONTEXTS] * 2


def _numbered(texts):
    """Each distinct text led by its own number: distinct in their first tokens, whatever max_length cuts."""
    order = {t: i for i, t in enumerate(dict.fromkeys(texts))}
    return [f"{order[t]} {t}" for t in texts]


@pytest.fixture(scope="module")
def other_weights(tiny_model, tmp_path_factory):
    """The tiny BERT with noise added to its word embeddings: the same architecture and tokenizer, other weights."""
    import shutil

    from transformers import BertModel

    folder = tmp_path_factory.mktemp("tiny-bert-other")
    shutil.copytree(tiny_model, folder, dirs_exist_ok=True)  # its tokenizer; the weights are written over
    model = BertModel.from_pretrained(tiny_model)
    weight = model.embeddings.word_embeddings.weight
    with torch.no_grad():
        weight.add_(weight.std() * torch.randn(weight.shape, generator=torch.Generator().manual_seed(1)))
    model.save_pretrained(folder)
    return str(folder)


# No contrastive stage: the cross-entropy finetune starts from the linear probe fitted on the features
# memory gives (a contrastive stage would refit the probe on its own features); a learning rate at which
# the layers strategy's two epochs finetune (at its default 1e-4 the fit keeps the probe).
REFIT = dict(CACHED, contrastive_epochs=0, learning_rate=3e-3)


def _min_layer(k):
    return dict(REFIT, strategy="random", strategy_options={"min_layer": k, "cache_frozen": True})


@pytest.mark.filterwarnings("ignore:.*longer than max_length")
@pytest.mark.parametrize("change", ["weights", "max_length", "added_tokens", "min_layer"])
def test_a_refit_after_a_change_predicts_what_a_fit_without_memory_predicts(
        tiny_model, tiny_model3, other_weights, toy_data, tmp_path, spy, change):
    """A fit fills ``memory``; a second fit with one change (the backbone's weights, ``max_length``,
    the words behind the added tokens' ids, the frozen depth ``min_layer``) sharing that memory predicts
    bit for bit what the same fit with ``memory=None`` predicts (one process): nothing stale is read.

    Mutation checks, each -> fails here: ``backbone_namespace`` without the weights' fingerprint
    ("weights"); ``text_keys`` keying a text by its first 5 tokens, blind to where max_length=6 cuts it
    ("max_length"); ``backbone_fingerprint`` over the original vocabulary's embedding rows only
    ("added_tokens"); the block store named "input of block" without ``k``, or the probe's features
    named without the cached depth they were read through ("min_layer").
    """
    X, y = toy_data
    model, first, second = tiny_model, REFIT, REFIT
    if change == "weights":
        second_model = other_weights
    elif change == "max_length":
        X = _numbered(X)
        second_model, second = tiny_model, dict(REFIT, max_length=6)  # [CLS], 4 tokens, [SEP]: every text cut
    elif change == "added_tokens":
        second_model = tiny_model
        first = second = dict(REFIT, adaptive_tokenization=True)
    else:
        model = second_model = tiny_model3
        first, second = _min_layer(1), _min_layer(2)
    X1, y1 = _split_word_data(SPLIT_WORDS["first"]) if change == "added_tokens" else (X, y)
    X2, y2 = _split_word_data(SPLIT_WORDS["second"]) if change == "added_tokens" else (X, y)
    filled = TokenSparseClassifier(model, memory=tmp_path, **first).fit(X1, y1)
    assert _entries(tmp_path)  # there is something stale to read
    refit = TokenSparseClassifier(second_model, memory=tmp_path, **second).fit(X2, y2)
    plain = TokenSparseClassifier(second_model, **second).fit(X2, y2)
    if change == "added_tokens":
        assert [a.token_id for a in refit.added_tokens_] == [a.token_id for a in filled.added_tokens_] != []
        assert filled.tokenizer_(X1)["input_ids"] == refit.tokenizer_(X2)["input_ids"]  # the same keys
    if change == "max_length":  # what memory could give stale here is the probe's features: the finetune must count
        assert refit.finetuned_ and refit.interpolation_ > 0
    np.testing.assert_array_equal(refit.predict_proba(X2), plain.predict_proba(X2))


def test_changing_any_one_backbone_tensor_changes_the_memory_namespace(tiny_model):
    """Every tensor of the backbone's state (embeddings, each LayerNorm, every block's weights and biases,
    the pooler) changed by one float32 step in one entry gives another namespace.

    Mutation check: ``backbone_fingerprint`` over the Linear layers' weights only -> fails (the first
    tensor it misses: the word embeddings).
    """
    from sksparseft.model.backbone import load_backbone
    from sksparseft.model.frozen_store import backbone_namespace

    _, encoder, _ = load_backbone(tiny_model)
    base = backbone_namespace(encoder, "cpu")
    state = encoder.state_dict()
    assert len(state) > 30  # every tensor of the 2-block BERT, not a chosen few
    for name, tensor in state.items():
        flat = tensor.view(-1)
        old = flat[-1].clone()
        with torch.no_grad():
            flat[-1] = torch.nextafter(old, old + 1) if tensor.is_floating_point() else old + 1
        try:
            assert backbone_namespace(encoder, "cpu") != base, f"{name} is not part of the namespace"
        finally:
            with torch.no_grad():
                flat[-1] = old
    assert backbone_namespace(encoder, "cpu") == base  # every tensor restored: the same namespace again


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
AFTER_CONTRASTIVE = dict(FAST, strategy="random", contrastive_epochs=1, random_state=0,
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
