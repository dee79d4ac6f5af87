"""One table of strategies, every one through the same checks (PEFT's test layout)."""

import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cases import ADAPTERS
from cases import FAST as BASE
from cases import STRATEGY_CASES as CASES
from sksparseft import TokenSparseClassifier
from sksparseft.strategies import STRATEGIES


FAST = dict(BASE, random_state=0, validation_fraction=0.0)


def test_every_registered_strategy_is_in_the_table():
    assert {name for name, _ in CASES} == set(STRATEGIES)


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def fitted(request, tiny_model, toy_data):
    name, options = request.param
    X, y = toy_data
    # A learning rate large enough that two epochs visibly move what is trained.
    clf = TokenSparseClassifier(tiny_model, strategy=name, strategy_options=options, learning_rate=1e-2, **FAST)
    return name, clf.fit(X, y)


def test_fit_and_predict(fitted, toy_data):
    name, clf = fitted
    X, y = toy_data
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert clf.strategy_["strategy"] == name
    assert clf.n_trainable_params_ > clf.module_.head.weight.numel()


def test_pickle_round_trip(fitted, toy_data):
    _, clf = fitted
    X, _ = toy_data
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X), clf.predict_proba(X))


def test_save_load_round_trip(fitted, toy_data, tmp_path):
    _, clf = fitted
    X, _ = toy_data
    loaded = TokenSparseClassifier.load(clf.save(tmp_path / "m.safetensors"))
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert loaded.strategy_ == clf.strategy_ and loaded.n_trainable_params_ == clf.n_trainable_params_
    # A loaded model saves again, with or without its backbone, and loads to the same model.
    again = TokenSparseClassifier.load(loaded.save(tmp_path / "again.safetensors"))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    whole = TokenSparseClassifier.load(loaded.save(tmp_path / "whole.safetensors", include_backbone=True))
    np.testing.assert_array_equal(whole.predict_proba(X), clf.predict_proba(X))


def test_frozen_entries_untouched(fitted, tiny_model):
    name, clf = fitted
    base = load_file(f"{tiny_model}/model.safetensors")
    params = {n.replace(".base_layer", ""): p.detach() for n, p in clf.module_.encoder.named_parameters()}
    changed = 0
    for pname, ref in base.items():
        now = params[pname]
        if name in ADAPTERS:
            assert torch.equal(now, ref), pname  # the backbone itself never moves
            continue
        trained = clf.mask_.dense(pname)
        assert torch.equal(now[~trained], ref[~trained]), pname
        changed += int((now[trained] != ref[trained]).sum())
    if name in ADAPTERS:
        extra = [n for n in params if n not in base]
        assert extra  # the adapter's own parameters
    else:
        assert changed > 0


def test_default_learning_rate_is_the_strategys(tiny_model, toy_data):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_model, strategy="full", **{**FAST, "max_epochs": 1}).fit(X, y)
    assert clf.learning_rate_ == STRATEGIES["full"].default_learning_rate


def test_trainable_counts_are_ordered(tiny_model, toy_data):
    X, y = toy_data
    counts = {
        s: TokenSparseClassifier(tiny_model, strategy=s, **{**FAST, "max_epochs": 1}).fit(X, y).n_trainable_params_
        for s in ("bitfit", "layers", "full")
    }
    assert counts["bitfit"] < counts["layers"] < counts["full"]


@pytest.mark.parametrize("strategy,options,match", [
    ("magic", None, "strategy must be one of"),
    ("lora", {"rank": 4}, "not known to strategy 'lora'"),
    ("token_sparse", "dense", "strategy_options"),
    ("layers", {"n_layers": 0}, "n_layers must be an integer >= 1"),
    ("token_sparse", {"min_layer": "top"}, "min_layer must be an integer"),
    ("random", {"ce_min_layer": 0}, "ce_min_layer must be an integer >= 1"),
])
def test_unknown_strategy_or_option(tiny_model, toy_data, strategy, options, match):
    X, y = toy_data
    with pytest.raises(ValueError, match=match):
        TokenSparseClassifier(tiny_model, strategy=strategy, strategy_options=options, **FAST).fit(X, y)


def test_gridsearch_compares_strategies(tiny_model, toy_data):
    from sklearn.model_selection import GridSearchCV

    X, y = toy_data
    search = GridSearchCV(
        TokenSparseClassifier(tiny_model, **{**FAST, "max_epochs": 1}), {"strategy": ["token_sparse", "lora"]}, cv=2
    ).fit(X, np.asarray(y))
    assert set(search.cv_results_["param_strategy"]) == {"token_sparse", "lora"}


def test_prefix_changes_attention_and_respects_padding(tiny_model):
    from sksparseft.model.backbone import load_backbone
    from sksparseft.model.module import ClassifierModule
    from sksparseft.strategies import FitContext, get_strategy
    from sksparseft.text.tokens import encode

    tok, enc, _ = load_backbone(tiny_model)
    module = ClassifierModule(enc, 2, dropout=0.0).eval()
    e = encode(tok, ["short", "a much longer text with many more tokens in it"], 32)
    ids, am = torch.as_tensor(e["input_ids"]), torch.as_tensor(e["attention_mask"])
    before = module(ids, am)
    ctx = FitContext(encodings=e, y=np.array([0, 1]), groups=[], focus=None, device="cpu", random_state=0)
    get_strategy("prefix", {"n_prefix": 3}).setup(module, ctx)
    with torch.no_grad():
        for m in module.encoder.modules():
            if hasattr(m, "prefix_key"):
                m.prefix_key.normal_(0, 1.0)
                m.prefix_value.normal_(0, 1.0)
    after = module(ids, am)
    assert not torch.allclose(before, after)
    alone = encode(tok, ["short"], 32)
    single = module(torch.as_tensor(alone["input_ids"]), torch.as_tensor(alone["attention_mask"]))
    torch.testing.assert_close(single[0], after[0], atol=1e-5, rtol=1e-4)


def test_adapter_summary_counts_the_backbone_and_the_adapters(fitted):
    name, clf = fitted
    if name not in ADAPTERS:
        pytest.skip("mask strategies report their mask instead")
    s = clf.mask_summary_
    head = sum(p.numel() for p in clf.module_.head.parameters())
    assert s["added_parameters"] == clf.n_trainable_params_ - head > 0
    assert s["total"] == sum(p.numel() for p in clf.module_.encoder.parameters()) - s["added_parameters"]


@pytest.mark.parametrize("strategy", ["token_sparse", "fisher", "random", "random_rows"])
def test_min_layer_keeps_the_mask_above_it(tiny_model, toy_data, strategy):
    from sksparseft.model.mask import layer_of

    X, y = toy_data
    clf = TokenSparseClassifier(tiny_model, strategy=strategy, strategy_options={"min_layer": 1},
                                **{**FAST, "max_epochs": 1}).fit(X, y)
    layers = {layer_of(n) for n in clf.mask_.indices}
    assert layers and layers <= {"layer.1"}  # no block 0, no embedding rows
    with pytest.raises(ValueError, match="min_layer=5 leaves no transformer block"):
        TokenSparseClassifier(tiny_model, strategy=strategy, strategy_options={"min_layer": 5}, **FAST).fit(X, y)


# Strategies that train the top blocks only and can run the ones below once per text.
CACHING = [("token_sparse", {"min_layer": 1}), ("random", {"min_layer": 1}), ("random_rows", {"min_layer": 1}),
           ("fisher", {"min_layer": 1}),
           ("layers", {"n_layers": 1})]


@pytest.mark.parametrize("backbone", ["tiny_model", "tiny_decoder"])
@pytest.mark.parametrize("strategy,options", CACHING, ids=[c[0] for c in CACHING])
def test_the_frozen_blocks_run_once_per_text(backbone, strategy, options, toy_data, request, monkeypatch):
    from sksparseft.model.module import ClassifierModule

    model = request.getfixturevalue(backbone)
    X, y = toy_data
    seen = []
    clear = ClassifierModule.clear_block_cache

    def record(self):
        seen.append(len(self.__dict__.get("_block_cache", {}).get("rows", {})))
        return clear(self)

    monkeypatch.setattr(ClassifierModule, "clear_block_cache", record)
    fits = {}
    for cache in (True, False):
        settings = {**options, "cache_frozen": cache}
        # float32: with the cache the frozen blocks run in float32, without it in each pass's bf16 ("auto").
        fits[cache] = TokenSparseClassifier(model, strategy=strategy, strategy_options=settings, precision="float32",
                                            **FAST).fit(X, y)
    assert seen == [len(set(X)), 0]  # every distinct text once; nothing without the cache
    assert "_block_cache" not in fits[True].module_.__dict__ and not fits[True].module_.cached_blocks
    trained = {n for n in fits[True].mask_.indices}
    assert trained and all("layers.1." in n or "layer.1." in n for n in trained)  # only above the cache
    if backbone == "tiny_decoder":
        # No dropout in this backbone: reusing the blocks changes nothing but float noise.
        np.testing.assert_allclose(fits[True].predict_proba(X), fits[False].predict_proba(X), atol=1e-4)
    else:
        assert fits[True].score(X, y) > 0.5


def test_a_registered_strategy_fits_saves_and_loads(tiny_model, toy_data, tmp_path):
    from sksparseft.strategies import STRATEGIES, register_strategy
    from sksparseft.strategies.base import MaskStrategy, whole_tensors

    @register_strategy
    class Norms(MaskStrategy):
        name = "norms_only"
        default_learning_rate = 1e-2

        def select(self, module, ctx):
            return whole_tensors(module, [n for n, _ in module.encoder.named_parameters() if "LayerNorm" in n])

    try:
        X, y = toy_data
        clf = TokenSparseClassifier(tiny_model, strategy="norms_only", **FAST).fit(X, y)
        assert clf.strategy_ == {"strategy": "norms_only"} and clf.learning_rate_ == 1e-2
        assert set(clf.mask_.indices) == {n for n, _ in clf.module_.encoder.named_parameters() if "LayerNorm" in n}
        back = TokenSparseClassifier.load(clf.save(tmp_path / "m.safetensors"), device="cpu")
        np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    finally:
        STRATEGIES.pop("norms_only", None)
    with pytest.raises(TypeError, match="Strategy subclass"):
        register_strategy(object)


@pytest.mark.parametrize("strategy,options", CASES, ids=[c[0] for c in CASES])
def test_strategy_options_fail_before_the_backbone_loads(strategy, options, toy_data, monkeypatch):
    from sksparseft.strategies import STRATEGIES

    def never(*args, **kwargs):
        raise AssertionError("the backbone must not be loaded")

    monkeypatch.setattr(TokenSparseClassifier, "stage_load", never)
    X, y = toy_data
    bad = {"unknown_option": 1}
    with pytest.raises(ValueError, match="unknown_option"):
        TokenSparseClassifier(strategy=strategy, strategy_options={**options, **bad}, **FAST).fit(X, y)
    assert STRATEGIES[strategy](**options).describe()["strategy"] == strategy


ROWS = [("random_rows", {}), ("random_rows", {"min_layer": 1}), ("token_sparse", {"rows": True, "embedding_rows": False}),
        ("fisher", {"rows": True, "min_layer": 1})]


@pytest.mark.parametrize("strategy,options", ROWS, ids=[f"{s}-{o}" for s, o in ROWS])
def test_row_masks_train_whole_rows_of_the_chosen_blocks_only(tiny_model, toy_data, strategy, options):
    from sksparseft.model.layout import block_index
    from sksparseft.model.sparse_delta import _layout

    X, y = toy_data
    clf = TokenSparseClassifier(tiny_model, strategy=strategy, strategy_options={**options, "density": 0.001},
                                **dict(FAST, contrastive_epochs=0)).fit(X, y)
    mask = clf.mask_
    assert mask.indices and all(block_index(n) >= options.get("min_layer", 0) for n in mask.indices)
    for name, idx in mask.indices.items():
        rows, cols = mask.shapes[name]
        chosen = set((idx // cols).tolist())
        assert len(idx) == len(chosen) * cols  # every chosen row whole
        # The sparse backward's weight-gradient block: the chosen rows only, not the whole weight.
        _, block_rows, block_cols, _, dense = _layout("linear", idx, (rows, cols))
        assert not dense and len(block_rows) == len(chosen) < rows
    total = sum(int(np.prod(s)) for s in mask.shapes.values())
    assert 0.5 * 0.001 * total < sum(len(i) for i in mask.indices.values()) < 2 * 0.001 * total
