"""The stages of fit (sksparseft/fit/stages.py): which run, in what order, and that a subclass can override one."""

import numpy as np
import pytest

from cases import FAST
from sksparseft import TokenSparseClassifier
from sksparseft.fit.stages import STAGES, FitStages
from sksparseft.fit.state import FitState

SETTINGS = dict(FAST, max_epochs=1, contrastive_epochs=0, random_state=0)


def _planned(clf, multilabel=False):
    state = FitState(texts=[], y=np.array([]), classes=np.array([0, 1]), y_enc=np.array([]), device="cpu")
    state.kind = type("Kind", (), {"multilabel": multilabel})()
    return clf._stages(state)


@pytest.mark.parametrize("params, left_out", [
    ({}, {"rejection", "thresholds"}),
    ({"contrastive_epochs": 0}, {"rejection", "thresholds", "contrastive"}),
    ({"refit_head": False}, {"rejection", "thresholds", "head_refit"}),
    ({"max_epochs": 0}, {"rejection", "thresholds", "training"}),
    ({"unknown_label": "oos"}, {"thresholds"}),
])
def test_the_parameters_decide_which_stages_run(params, left_out):
    planned = _planned(TokenSparseClassifier(**params))
    assert planned == [s for s in STAGES if s not in left_out]


def test_thresholds_run_for_a_multilabel_fit_only():
    assert "thresholds" in _planned(TokenSparseClassifier(), multilabel=True)
    assert "thresholds" not in _planned(TokenSparseClassifier(), multilabel=False)


def test_every_stage_is_a_method_of_the_mixin():
    assert all(callable(getattr(FitStages, f"stage_{name}", None)) for name in STAGES)


def test_fit_runs_the_stages_in_order_and_times_each(tiny_model, toy_data):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_model, **SETTINGS).fit(X, y)
    assert list(clf.fit_stages_) == _planned(clf)
    assert all(t >= 0 for t in clf.fit_stages_.values())
    assert sum(clf.fit_stages_.values()) <= clf.fit_time_


def test_fit_says_how_many_training_texts_max_length_cuts(tiny_model, toy_data):
    X, y = toy_data
    with pytest.warns(UserWarning, match=rf"{len(X)} of {len(X)} training texts are longer than max_length=4"):
        TokenSparseClassifier(tiny_model, max_length=4, **SETTINGS).fit(X, y)


class _Observed(TokenSparseClassifier):
    """A subclass that wraps one stage (as the docs invite): it sees the state and changes the model."""

    def stage_head_refit(self, state):
        self.seen_ = (state.module is not None, len(state.train_idx), state.stage_times.copy())
        super().stage_head_refit(state)
        state.module.head.bias.data.fill_(0.0)
        state.module.head.bias.data[0] = 100.0  # every text now goes to the first class


def test_a_subclass_overriding_a_stage_changes_the_fit(tiny_model, toy_data):
    X, y = toy_data
    clf = _Observed(tiny_model, **SETTINGS).fit(X, y)
    has_module, n_train, before = clf.seen_
    assert has_module and 0 < n_train < len(X)
    assert "interpolation" in before and "head_refit" not in before  # it ran after the earlier stages only
    assert set(clf.predict(X)) == {clf.classes_[0]}


def test_an_error_in_a_stage_leaves_the_estimator_unfitted(tiny_model, toy_data):
    class Broken(TokenSparseClassifier):
        def stage_interpolation(self, state):
            raise RuntimeError("broken stage")

    clf = Broken(tiny_model, **SETTINGS)
    with pytest.raises(RuntimeError, match="broken stage"):
        clf.fit(*toy_data)
    assert not hasattr(clf, "module_") and not hasattr(clf, "classes_")


@pytest.mark.parametrize("cache", [True, False])
def test_the_head_refit_reads_the_cached_frozen_blocks(cache, tiny_model, toy_data, monkeypatch):
    import torch

    from sksparseft.model.layout import transformer_blocks

    X, y = toy_data
    runs = []
    refit = FitStages.stage_head_refit

    def counted(self, state):
        # A layer inside the block: a skipped block is still called, its layers are not.
        inner = next(m for m in transformer_blocks(state.module.encoder)[0].modules() if isinstance(m, torch.nn.Linear))
        handle = inner.register_forward_hook(lambda *_: runs.append(1))
        try:
            refit(self, state)
        finally:
            handle.remove()

    monkeypatch.setattr(FitStages, "stage_head_refit", counted)
    clf = TokenSparseClassifier(tiny_model, strategy="layers", strategy_options={"n_layers": 1, "cache_frozen": cache},
                                **SETTINGS).fit(X, y)
    assert (len(runs) == 0) == cache  # with the cache, the frozen block never runs again in the refit
    assert "_block_cache" not in clf.module_.__dict__  # and it is gone once fit ends
