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
