"""The benchmark parts see inside fit through stage hooks; they must observe without changing the fit."""

from __future__ import annotations

import numpy as np
import pytest

from cases import FAST
from sksparseft import TokenSparseClassifier

interpolation = pytest.importorskip("benchmarks.interpolation", reason="run from the repository root (python -m pytest)")
dev_variants = pytest.importorskip("benchmarks.dev_variants")
cost = pytest.importorskip("benchmarks.cost")
run = pytest.importorskip("benchmarks.run")
render = pytest.importorskip("benchmarks.render")
features = pytest.importorskip("benchmarks.features")

SETTINGS = dict(FAST, random_state=0, validation_fraction=0.25, max_epochs=3)


@pytest.fixture(autouse=True, scope="module")
def _registry_as_it_was():
    """benchmarks.leads registers two strategies of its own: leave the registry as this module found it."""
    from sksparseft.strategies import STRATEGIES

    before = dict(STRATEGIES)
    yield
    STRATEGIES.clear()
    STRATEGIES.update(before)


@pytest.fixture(scope="module")
def default(tiny_model, toy_data):
    X, y = toy_data
    return TokenSparseClassifier(tiny_model, **SETTINGS).fit(X, y)


def test_interpolation_part_scores_every_point_and_fits_the_default_model(tiny_model, toy_data, default):
    X, y = toy_data
    clf = interpolation.InterpolationScoredOnTest(tiny_model, **SETTINGS)
    clf._test_texts, clf._test_labels = X[:20], np.asarray(y[:20], dtype=object)
    clf.fit(X, y)
    assert set(clf.test_scores_) == set(clf.interpolation_scores_)
    assert all(0.0 <= acc <= 1.0 and loss > 0 for acc, loss in clf.test_scores_.values())
    np.testing.assert_array_equal(clf.predict_proba(X), default.predict_proba(X))


def test_dev_variants_part_scores_every_ending_and_fits_the_default_model(tiny_model, toy_data, default):
    X, y = toy_data
    snaps = []
    clf = dev_variants.DevScoredEnding(tiny_model, callbacks=[dev_variants.Snapshots(snaps)], **SETTINGS)
    clf._dev_texts, clf._dev_labels, clf._snapshots = X[:20], np.asarray(y[:20], dtype=object), snaps
    clf.fit(X, y)
    assert set(clf.dev_scores_) == set(render.DEV_VARIANTS)  # every ending the rendered table shows
    assert len(snaps) == len(clf.history_) - 1
    np.testing.assert_array_equal(clf.predict_proba(X), default.predict_proba(X))


def test_cost_part_forces_the_plain_path_with_the_same_model(tiny_model, toy_data, default):
    X, y = toy_data
    clf = cost.PlainPath(tiny_model, **SETTINGS).fit(X, y)
    assert default.module_.sparse_backward and not clf.module_.sparse_backward
    np.testing.assert_allclose(clf.predict_proba(X), default.predict_proba(X), atol=1e-4)


def test_runner_specs_cover_the_config():
    specs = run.compare_specs("cpu_10shot", run.CONFIGS["cpu_10shot"])
    # 2 datasets x 3 seeds x (8 strategies + 3 references)
    assert len(specs) == 2 * 3 * 11
    assert {s["method"] for s in specs} == set(run.STRATEGIES) | {"frozen_lr", "tfidf_lr", "setfit"}
    assert all(s["method"] not in ("frozen_lr", "tfidf_lr", "setfit") for s in run.compare_specs("slm", run.CONFIGS["slm"]))
    only = run.compare_specs("density", run.CONFIGS["density"], datasets=["banking77"])
    assert {s["params"]["density"] for s in only} == {0.001, 0.005, 0.01, 0.05} and len(only) == 12


def test_every_dev_screen_variant_names_a_lead_or_strategy_that_fits():
    leads = pytest.importorskip("benchmarks.leads")
    from sksparseft.strategies import STRATEGIES

    from benchmarks.compare import REFERENCES

    for name, variant in run.CONFIGS["dev_screen"]["variants"].items():
        assert variant["method"] in STRATEGIES or variant["method"] in REFERENCES, name
        assert variant.get("lead") in (None, *leads.LEADS), name


@pytest.mark.parametrize("lead", ["TokenViews", "ContrastiveViews", "JointContrastive", "ContrastiveGroupViews"])
def test_dev_screen_leads_fit_and_leave_the_module_plain(tiny_model, toy_data, lead):
    leads = pytest.importorskip("benchmarks.leads")
    from sksparseft.model.module import ClassifierModule

    X, y = toy_data
    clf = leads.LEADS[lead](tiny_model, contrastive_epochs=1, **SETTINGS).fit(X, y)
    assert type(clf.module_) is ClassifierModule  # what is saved and exported is the package's own module
    np.testing.assert_allclose(clf.predict_proba(X[:5]).sum(axis=1), 1.0, rtol=1e-6)


def test_token_focus_at_every_layer_selects_other_entries_than_plain_fisher(tiny_model, toy_data):
    pytest.importorskip("benchmarks.leads")  # registers token_layers and fisher_batched
    X, y = toy_data
    masks = {s: TokenSparseClassifier(tiny_model, strategy=s, **SETTINGS).fit(X, y).mask_
             for s in ("token_layers", "fisher_batched")}
    a, b = ({(n, int(i)) for n, idx in m.indices.items() for i in idx} for m in masks.values())
    assert a != b and len(a & b) > 0


def _assert_sources_apart(train, train_sets, train_sources, test, test_sets, test_sources):
    used = [k for s in train_sources for k in s]
    assert len(used) == len(set(used))  # no source sentence in two training texts
    assert not set(used) & {k for s in test_sources for k in s}  # none on both sides
    for texts, sets, sources in ((train, train_sets, train_sources), (test, test_sets, test_sources)):
        assert len(texts) == len(sets) == len(sources)
        assert all(len(s) == len(src) for s, src in zip(sets, sources))  # a pair: two sentences, two labels
        assert any(len(s) == 1 for s in sets) and any(len(s) == 2 for s in sets)


def test_multilabel_pairs_keep_every_source_sentence_on_one_side_in_one_text():
    labels = ["a", "b", "c", "d"]
    X = [f"{c} request number {i}?" for c in labels for i in range(10)]
    y = [c for c in labels for _ in range(10)]
    X[1] = "A request number 0."  # a repeat of X[0], case and end punctuation aside
    Xt = [f"{c} test number {i}" for c in labels for i in range(8)] + ["a request number 5", "a test number 0!"]
    yt = [c for c in labels for _ in range(8)] + ["a", "a"]
    parts = features.multilabel_texts(X, y, Xt, yt, seed=0, exclude=["b test number 3"])
    _assert_sources_apart(*parts)
    train_keys = {k for s in parts[2] for k in s}
    test_keys = {k for s in parts[5] for k in s}
    # 39 distinct training sentences: 20 alone, 19 to pair (9 pairs, one left over); 31 test ones: 15 alone, 8 pairs
    assert len(train_keys) == 38 and len(test_keys) == 31
    assert "b test number 3" not in test_keys and "a request number 5" not in test_keys


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_benchmark_data_keeps_sources_apart(seed):
    from benchmarks.common import load
    from sksparseft.datasets import load_banking77

    X, y, Xt, yt, _ = load("banking77", "10shot", seed)
    everything, _ = load_banking77("train", return_X_y=True)
    parts = features.multilabel_texts(X, y, Xt, yt, seed, exclude=everything)
    _assert_sources_apart(*parts)
    assert sum(len(s) == 2 for s in parts[1]) == 192  # 5 of each intent's 10 in pairs, none dropped
    assert not {features._key(t) for t in everything} & {k for s in parts[5] for k in s}
