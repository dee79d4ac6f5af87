"""The research lab (benchmarks/research/): its leads fit, each changes the package's fit only where it says
(with its change turned off it fits what the package fits), and the package carries none of its names (that the
package never imports the lab is the product's rule: tests/test_package.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from .cases import FAST
from sksparseft import TokenSparseClassifier

ROOT = Path(__file__).resolve().parents[2]
leads = pytest.importorskip("benchmarks.research.leads",
                            reason="run from the repository root (python -m pytest benchmarks/tests)")
dev_variants = pytest.importorskip("benchmarks.research.dev_variants")
views = pytest.importorskip("benchmarks.research.views")
run = pytest.importorskip("benchmarks.run")
render = pytest.importorskip("benchmarks.render")

SETTINGS = dict(FAST, random_state=0, validation_fraction=0.25, max_epochs=3)
#: Identifiers only the lab uses: none may appear in the package.
LAB_NAMES = ("view_drop", "view_mask", "ViewCollate", "kept_positions", "_view_features", "token_layers",
             "fisher_batched", "LayerFocus", "BatchedFisher", "register_lab_strategies", "TokenViews",
             "ContrastiveViews", "JointContrastive", "SupConNet", "BalancedLoader", "CachedNoise",
             "ContrastiveGroupViews", "DevScoredEnding")


@pytest.fixture
def lab_strategies():
    """``token_layers`` and ``fisher_batched`` registered for one test; the registry as it was afterwards."""
    from sksparseft.strategies import STRATEGIES

    before = dict(STRATEGIES)
    leads.register_lab_strategies()
    yield
    STRATEGIES.clear()
    STRATEGIES.update(before)


@pytest.fixture(scope="module")
def default(tiny_model, toy_data):
    X, y = toy_data
    return TokenSparseClassifier(tiny_model, **SETTINGS).fit(X, y)


# -- the boundary -------------------------------------------------------------------------
def _package_sources():
    return sorted((ROOT / "sksparseft").rglob("*.py"))


def test_the_package_holds_no_name_only_the_lab_uses():
    words = re.compile(r"\b(" + "|".join(LAB_NAMES) + r")\b")
    hits = [f"{p.relative_to(ROOT)}: {m.group(1)}" for p in _package_sources() for m in words.finditer(p.read_text())]
    assert hits == []


def test_nothing_in_the_benchmarks_patches_the_package():
    # A lead changes a fit by overriding stage methods, not by swapping the package's functions or classes.
    patterns = re.compile(r"mock\.patch|monkeypatch|__class__\s*=|\._eval_batch\(|setattr\(\s*(fit_stages|stages|"
                          r"block_cache|contrastive|training)\b")
    # The lab's tests (benchmarks/tests/) may patch: they test the lab, and are no part of a fit.
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in sorted((ROOT / "benchmarks").rglob("*.py"))
            if "tests" not in p.relative_to(ROOT / "benchmarks").parts
            for i, line in enumerate(p.read_text().splitlines(), 1) if patterns.search(line)]
    assert hits == []


def test_the_lab_strategies_stay_out_of_the_registry_until_asked():
    # A fresh process: importing the lab registers nothing; asking registers both.
    code = ("import benchmarks.research.leads as lab\nfrom sksparseft.strategies import STRATEGIES\n"
            "on_import = sorted(set(lab.LAB_STRATEGIES) & set(STRATEGIES))\nlab.register_lab_strategies()\n"
            "print(on_import, sorted(set(lab.LAB_STRATEGIES) - set(STRATEGIES)), len(lab.LAB_STRATEGIES))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "[]", str(len(leads.LAB_STRATEGIES))] and leads.LAB_STRATEGIES


# -- the leads ------------------------------------------------------------------------------
#: The steps of a stage that a lead may override besides whole stages (sksparseft/fit/stages.py).
STEPS = ("get_training_net", "get_training_data", "run_contrastive")


@pytest.mark.parametrize("name", sorted(leads.LEADS))
def test_every_lead_is_an_estimator_that_overrides_stages_or_their_steps(name):
    from sklearn.base import clone

    from sksparseft.fit.stages import STAGES, FitStages

    cls = leads.LEADS[name]
    clf = clone(cls(max_epochs=1))
    assert isinstance(clf, TokenSparseClassifier) and clf.max_epochs == 1
    assert cls.OVERRIDES
    for method in cls.OVERRIDES:
        assert method.removeprefix("stage_") in STAGES or method in STEPS, method
        own = getattr(cls, method)
        assert own is not getattr(FitStages, method) and own.__module__.startswith("benchmarks.research."), method


def test_every_dev_screen_variant_names_a_lead_or_strategy_that_fits(lab_strategies):
    from sksparseft.strategies import STRATEGIES

    from benchmarks.compare import REFERENCES

    for name, variant in run.CONFIGS["dev_screen"]["variants"].items():
        assert variant["method"] in STRATEGIES or variant["method"] in REFERENCES, name
        assert variant.get("lead") in (None, *leads.LEADS), name


#: Each lead's change turned off (class attributes, as dev_screen's ``attrs`` set them).
CHANGE_OFF = {
    "TokenViews": {"view_drop": 0.0},
    "Contrastive": {"con_epochs": 0},
    "ContrastiveViews": {"con_epochs": 0, "view_drop": 0.0},
    "JointContrastive": {"supcon_weight": 0.0, "balanced_batches": False},
    "CachedNoise": {"cache_dropout": 0.0},
    "ContrastiveGroupViews": {"view_drop": 0.0},
}
#: The cost mode, where CachedNoise's change has cached activations to act on.
CACHE_MODE = dict(strategy="token_sparse", strategy_options={"min_layer": 1, "cache_frozen": True})


@pytest.fixture(scope="module")
def default_cache_mode(tiny_model, toy_data):
    X, y = toy_data
    return TokenSparseClassifier(tiny_model, **SETTINGS, **CACHE_MODE).fit(X, y)


def test_every_lead_has_a_way_to_turn_its_change_off():
    assert set(CHANGE_OFF) == set(leads.LEADS)
    for name, attrs in CHANGE_OFF.items():
        assert all(hasattr(leads.LEADS[name], a) for a in attrs), name


@pytest.mark.parametrize("name", sorted(CHANGE_OFF))
def test_a_lead_with_its_change_turned_off_fits_what_the_package_fits(tiny_model, toy_data, default,
                                                                      default_cache_mode, name):
    # A lead changes the fit only through the steps it overrides: the rest is the package's own, so a
    # difference in its rows is the lead's. With the change on, the fit differs (the package calls the step).
    X, y = toy_data
    cls = leads.LEADS[name]
    params, package = (dict(SETTINGS, **CACHE_MODE), default_cache_mode) if name == "CachedNoise" else (SETTINGS, default)
    off = type(name, (cls,), CHANGE_OFF[name])(tiny_model, **params).fit(X, y)
    assert off.contrastive_epochs > 0 and off.interpolation_ == package.interpolation_
    np.testing.assert_array_equal(off.predict_proba(X), package.predict_proba(X))
    on = cls(tiny_model, **params).fit(X, y)
    assert not np.array_equal(on.predict_proba(X), package.predict_proba(X))


@pytest.mark.parametrize("name", sorted(leads.LEADS))
def test_every_lead_fits_and_leaves_the_module_plain(tiny_model, toy_data, name):
    from sksparseft.model.module import ClassifierModule

    X, y = toy_data
    params = dict(SETTINGS, max_epochs=1, contrastive_epochs=1)
    if name == "CachedNoise":
        params.update(strategy="token_sparse", strategy_options={"min_layer": 1, "cache_frozen": True})
    clf = leads.LEADS[name](tiny_model, **params).fit(X, y)
    assert type(clf.module_) is ClassifierModule  # what is saved and exported is the package's own module
    np.testing.assert_allclose(clf.predict_proba(X[:5]).sum(axis=1), 1.0, rtol=1e-6)


def test_token_focus_at_every_layer_selects_other_entries_than_plain_fisher(tiny_model, toy_data, lab_strategies):
    X, y = toy_data
    # The mask is chosen before anything trains: no training needed to compare them.
    only_selection = dict(SETTINGS, max_epochs=0, contrastive_epochs=0)
    masks = {s: TokenSparseClassifier(tiny_model, strategy=s, **only_selection).fit(X, y).mask_
             for s in ("token_layers", "fisher_batched")}
    a, b = ({(n, int(i)) for n, idx in m.indices.items() for i in idx} for m in masks.values())
    assert a != b and len(a & b) > 0


# -- views ----------------------------------------------------------------------------------
def test_views_never_drop_kept_positions_or_revive_padding():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]] * 200)
    keep = torch.tensor([[1, 0, 1, 0, 1, 0, 0]] * 200)
    out = views.view_mask(mask, keep, 0.5)
    assert torch.equal(out[:, [0, 2, 4]], mask[:, [0, 2, 4]])
    assert int(out[:, 5:].sum()) == 0
    share = float(out[:, [1, 3]].float().mean())
    assert 0.4 < share < 0.6
    assert torch.equal(views.view_mask(mask, torch.ones_like(keep), 0.9), mask)


def test_a_view_batch_is_trimmed_and_its_keep_never_reaches_the_module():
    item = {"input_ids": np.array([101, 7, 8, 102, 0, 0]), "attention_mask": np.array([1, 1, 1, 1, 0, 0]),
            "keep": np.array([1, 0, 0, 1, 0, 0])}
    X, y = views.ViewCollate(0.0)([(item, 1), (item, 2)])
    assert set(X) == {"input_ids", "attention_mask"} and X["attention_mask"].shape == (2, 4)
    assert y.tolist() == [1, 2]
    torch.manual_seed(0)
    X, _ = views.ViewCollate(1.0)([(item, 1)])
    assert X["attention_mask"].tolist() == [[1, 0, 0, 1]]  # every droppable position dropped, the kept ones kept


# -- the dev_variants part --------------------------------------------------------------------
def test_dev_variants_part_scores_every_ending_and_fits_the_default_model(tiny_model, toy_data, default):
    X, y = toy_data
    snaps = []
    clf = dev_variants.DevScoredEnding(tiny_model, callbacks=[dev_variants.Snapshots(snaps)], **SETTINGS)
    clf._dev_texts, clf._dev_labels, clf._snapshots = X[:20], np.asarray(y[:20], dtype=object), snaps
    clf.fit(X, y)
    assert set(clf.dev_scores_) == set(render.DEV_VARIANTS)  # every ending the rendered table shows
    assert len(snaps) == len(clf.history_) - 1
    np.testing.assert_array_equal(clf.predict_proba(X), default.predict_proba(X))
