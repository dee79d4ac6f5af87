"""The benchmark tool's parts and runner: they see inside fit through stage hooks and must observe without
changing the fit. The research screen's parts and leads are tested in test_research_screen.py."""

from __future__ import annotations

import numpy as np
import pytest

from .cases import FAST
from sksparseft import TokenSparseClassifier

interpolation = pytest.importorskip("benchmarks.interpolation",
                                    reason="run from the repository root (python -m pytest benchmarks/tests)")
cost = pytest.importorskip("benchmarks.cost")
run = pytest.importorskip("benchmarks.run")
features = pytest.importorskip("benchmarks.features")
compare = pytest.importorskip("benchmarks.compare")

SETTINGS = dict(FAST, random_state=0, validation_fraction=0.25, max_epochs=3)


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


def test_cost_part_forces_the_plain_path_with_the_same_model(tiny_model, toy_data, default):
    X, y = toy_data
    clf = cost.PlainPath(tiny_model, **SETTINGS).fit(X, y)
    assert default.module_.sparse_backward and not clf.module_.sparse_backward
    np.testing.assert_allclose(clf.predict_proba(X), default.predict_proba(X), atol=1e-4)


def test_the_validation_trace_rows_carry_is_the_fits_own_as_plain_json(default):
    """A row holds the probe's and every epoch's validation accuracy and the interpolation's points,
    as plain JSON, so a stopping rule can be replayed from the rows."""
    import json

    trace = json.loads(json.dumps(compare.validation_trace(default)))
    assert trace["valid_acc"] == pytest.approx([row["valid_acc"] for row in default.history_])
    assert len(trace["valid_acc"]) == len(default.history_) >= 2  # the probe, then the epochs
    assert trace["frozen_probe_valid_acc"] == pytest.approx(default.history_[0]["frozen_probe_valid_acc"])
    assert {float(a) for a in trace["interpolation_scores"]} == set(default.interpolation_scores_)
    for a, (acc, loss) in default.interpolation_scores_.items():
        assert trace["interpolation_scores"][str(a)] == pytest.approx([acc, loss])


@pytest.mark.parametrize("precision, native, expected", [
    ("float32", True, "float32"), ("bfloat16", False, "bfloat16"), ("auto", True, "bfloat16"), ("auto", False, "float32")])
def test_the_precision_rows_record_is_precision_resolved_for_the_fits_device_and_cpu(
        default, monkeypatch, precision, native, expected):
    """``precision_used`` of a row: "auto" is bf16 for the default strategy on a CPU with native bf16 only."""
    import sksparseft.model.devices as devices

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(default, "precision", precision)
    assert default.device_.type == "cpu"
    assert compare._precision_used(default) == expected


def test_runner_specs_cover_the_config():
    specs = run.compare_specs("cpu_10shot", run.CONFIGS["cpu_10shot"])
    # 2 datasets x 3 seeds x (the 8 strategies its rows were written with + 3 references)
    assert len(specs) == 2 * 3 * 11
    assert {s["method"] for s in specs} == set(run.STRATEGIES_0_2) | {"frozen_lr", "tfidf_lr", "setfit"}
    assert all(s["method"] not in ("frozen_lr", "tfidf_lr", "setfit") for s in run.compare_specs("slm", run.CONFIGS["slm"]))
    only = run.compare_specs("density", run.CONFIGS["density"], datasets=["banking77"])
    assert {s["params"]["strategy_options"]["density"] for s in only} == {0.001, 0.005, 0.01, 0.05} and len(only) == 12


def test_every_strategy_of_the_runner_is_the_package_registry():
    from sksparseft.strategies import STRATEGIES

    assert run.STRATEGIES == list(STRATEGIES)  # "every strategy" follows the package, random_rows included
    assert run.CONFIGS["full"]["strategies"] == run.STRATEGIES
    assert set(run.STRATEGIES_0_2) < set(run.STRATEGIES)


def test_every_config_names_a_part_the_runner_can_import():
    import importlib

    for name, cfg in run.CONFIGS.items():
        part = cfg.get("part", "compare")
        assert part == "compare" or callable(importlib.import_module(run.PARTS[part]).run), name
        assert cfg["about"], name
    assert run.PARTS["dev_screen"].startswith("benchmarks.research.")


def test_the_runner_lists_every_config(capsys):
    run.main(["--list"])
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(run.CONFIGS)


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


def test_group_feature_indicators_mark_whole_ngrams_anywhere_in_a_text():
    from benchmarks.research.group_features import _indicators

    ind = _indicators([[1, 2, 3], [2, 3], [3], [3, 2], [2, 3, 2, 3]], [(2, 3), (1,), (3,)]).toarray()
    np.testing.assert_array_equal(ind, [[1, 1, 1], [1, 0, 1], [0, 0, 1], [0, 0, 1], [1, 0, 1]])  # 0/1, not counts


def test_the_label_blind_control_keeps_the_ngrams_in_most_texts():
    from benchmarks.research.group_features import _frequent

    # (1,) is in three texts; (2,) and (1, 2) in two (a text counts once); ties in token order.
    assert _frequent([[1, 2, 2], [1, 3], [1, 2]], 2, max_ngram=2) == [(1,), (1, 2)]


def test_replayed_early_stopping_follows_the_rule_and_a_fits_own_stop(tiny_model, toy_data):
    render = pytest.importorskip("benchmarks.render")
    replay = render.replay_stop
    trace = [0.5, 0.6, 0.6, 0.55, 0.7, 0.6, 0.6]
    assert replay(trace, 3) == (7, 5)  # three misses after epoch 5 end it at 8; the scores end first
    assert replay(trace, 2) == (4, 2)  # epochs 3 and 4 are two misses after epoch 2
    assert replay(trace, 1) == (3, 2)
    assert replay([0.6, 0.6 * (1 + 1e-5), 0.6 * (1 + 1e-5)], 2) == (3, 1)  # below the 1e-4 relative threshold
    X, y = toy_data
    fit = TokenSparseClassifier(tiny_model, **dict(SETTINGS, max_epochs=12, patience=3, contrastive_epochs=1)).fit(X, y)
    scores = [row["valid_acc"] for row in fit.history_[1:]]
    best = max(row["epoch"] for row in fit.history_[1:] if row.get("valid_acc_best"))
    assert len(scores) < 12  # the fit stopped early, so the replay has a stop to find
    assert replay(scores, 3) == (len(scores), best)
