"""Model selection (sksparseft/fit/selection.py): each choice a fit makes between its snapshots.

Every test names the deliberate break it was checked against once by hand ("Mutation check"):
the break was made in sksparseft/fit/selection.py, the test failed, the break was reverted.
"""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cases import FAST
from sksparseft import TokenSparseClassifier
from sksparseft.fit.selection import ModelSelection, either_or, falls_back, first_non_finite, reports_finetuned

ROOT = Path(__file__).resolve().parents[1]


class _Module(nn.Module):
    """The two methods selection uses, over one trainable tensor and a head bias."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
        self.head = nn.Linear(2, 2)

    def trainable_state(self):
        return {n: p.detach().clone() for n, p in self.named_parameters()}

    @torch.no_grad()
    def load_trainable_state_(self, state):
        params = dict(self.named_parameters())
        for n, v in state.items():
            params[n].copy_(v)


def _at(module, value):
    """``module``'s state with every tensor filled with ``value``."""
    return {n: torch.full_like(v, value) for n, v in module.trainable_state().items()}


def _w(module):
    return float(module.w.detach()[0])


# -- the decisions --------------------------------------------------------------------------------
def test_first_non_finite_names_the_first_epoch_with_a_nan_or_an_infinite_loss():
    """Mutation check: ``np.isnan`` for ``np.isfinite`` (an infinite loss passes as finite) -> fails."""
    assert first_non_finite([0.9, 0.5, 0.4]) is None
    assert first_non_finite([0.9, float("inf"), float("nan")]) == 2
    assert first_non_finite([float("nan")]) == 1
    assert first_non_finite([]) is None


def test_either_or_keeps_the_finetune_unless_it_scored_below_its_start():
    """Mutation check: ``<=`` for ``<`` (a tie goes back to the start) -> fails."""
    assert either_or(0.8, 0.7) == 1.0
    assert either_or(0.7, 0.7) == 1.0  # ties keep the finetune
    assert either_or(0.6, 0.7) == 0.0


def test_falls_back_below_the_floor_or_when_nothing_trained_is_left():
    """Mutation checks: ``<=`` for ``<`` -> fails (tie); ``nothing_left`` ignored -> fails."""
    assert falls_back((0.6, 1.0), (0.7, 0.9), nothing_left=False)
    assert not falls_back((0.7, 2.0), (0.7, 0.9), nothing_left=False)  # ties keep the finetune, log-loss aside
    assert not falls_back((0.8, 1.0), (0.7, 0.9), nothing_left=False)
    assert falls_back(None, None, nothing_left=True)  # diverged without a validation split
    assert not falls_back(None, None, nothing_left=False)  # no validation split: nothing to compare


@pytest.mark.parametrize("trained, diverged, fell_back, blend, expected", [
    ((), [], False, 0.0, False),  # nothing trains: the model is the probe
    (("training",), [], False, 0.5, True),
    (("training",), [], False, 0.0, False),  # the blend sits on the probe
    (("contrastive", "training"), [], False, 0.0, True),  # the start itself moved
    (("contrastive", "training"), ["contrastive"], False, 0.0, False),  # ... unless the contrastive stage was undone
    (("contrastive", "training"), [], True, 0.0, False),  # fell back to the floor
    (("contrastive",), [], False, 1.0, True),
])
def test_finetuned_says_whether_the_model_left_the_frozen_probe(trained, diverged, fell_back, blend, expected):
    """Mutation checks: ``fell_back`` ignored -> fails; the contrastive stage counted though undone -> fails."""
    assert reports_finetuned(trained, diverged, fell_back, blend) is expected


# -- the snapshots and choices on a module ----------------------------------------------------------
def test_the_floor_is_the_frozen_module_with_the_probe_head_and_is_scored_with_that_head():
    """Mutation check: the floor scored with the module's current head (not the probe's) -> fails."""
    m = _Module()
    probe_head = {"weight": torch.full((2, 2), 7.0), "bias": torch.full((2,), 7.0)}
    seen = []
    sel = ModelSelection(score=lambda module: seen.append(float(module.head.bias[0].detach())) or (0.5, 1.0))
    head_before = m.head.bias.detach().clone()
    sel.record_floor(m, probe_head)
    assert seen == [7.0] and sel.floor_scores == (0.5, 1.0)
    assert torch.equal(sel.floor["head.bias"], probe_head["bias"]) and torch.equal(sel.floor["w"], m.w.detach())
    assert torch.equal(m.head.bias.detach(), head_before)  # what was loaded comes back


@pytest.mark.parametrize("stage, back_to", [("contrastive", "floor"), ("training", "start")])
def test_a_diverged_stage_is_undone_back_to_where_it_started(stage, back_to):
    """Mutation check: the cross-entropy stage undone back to the floor (not its start) -> fails."""
    m = _Module()
    sel = ModelSelection(trained=("contrastive", "training"))
    sel.floor, sel.start = _at(m, 1.0), _at(m, 2.0)
    m.load_trainable_state_(_at(m, 3.0))
    assert not sel.discard_if_diverged(stage, [0.5, 0.4], m) and _w(m) == 3.0
    with pytest.warns(UserWarning, match="non-finite in epoch 2"):
        assert sel.discard_if_diverged(stage, [0.5, float("nan")], m)
    assert _w(m) == {"floor": 1.0, "start": 2.0}[back_to] and sel.diverged == [stage]
    assert sel.blend == (0.0 if stage == "training" else 1.0)  # an undone finetune leaves one point on the line


def test_the_blend_is_the_point_best_on_validation_and_is_loaded():
    """Mutation check: the refined grid skipped (only 0, 0.25 .. 1) -> fails (0.625 is never reached)."""
    m = _Module()
    sel = ModelSelection(score=lambda module: (round(1 - abs(_w(module) - 0.625), 6), 0.1), trained=("training",))
    sel.start = _at(m, 0.0)
    m.load_trainable_state_(_at(m, 1.0))
    sel.choose_blend(m, history=[], interpolate=True)
    assert sel.blend == 0.625 and _w(m) == pytest.approx(0.625) and sel.start_scores == (0.375, 0.1)
    assert sorted(sel.scores) == [0.0, 0.25, 0.5, 0.625, 0.75, 0.875, 1.0]


@pytest.mark.parametrize("best_epoch, start, expected", [(0.8, 0.7, 1.0), (0.7, 0.7, 1.0), (0.6, 0.7, 0.0)])
def test_without_interpolation_the_best_epoch_is_held_to_the_start(best_epoch, start, expected):
    """Mutation check: the last epoch's score for the best epoch's -> fails (the last is lowest here)."""
    m = _Module()
    sel = ModelSelection(score=lambda module: (start, 0.1) if _w(module) == 0.0 else (0.0, 9.0), trained=("training",))
    sel.start = _at(m, 0.0)
    m.load_trainable_state_(_at(m, 1.0))
    history = [{"valid_acc": best_epoch - 0.1}, {"valid_acc": best_epoch}, {"valid_acc": 0.1}]
    sel.choose_blend(m, history=history, interpolate=False)
    assert sel.blend == expected and _w(m) == expected


def test_without_interpolation_an_average_is_scored_as_loaded():
    """Mutation check: the history's best epoch used though the end is the epochs' average -> fails."""
    m = _Module()
    sel = ModelSelection(score=lambda module: (0.7, 0.1) if _w(module) == 0.0 else (0.6, 0.1), trained=("training",))
    sel.start, sel.average = _at(m, 0.0), _at(m, 1.0)
    m.load_trainable_state_(sel.average)
    sel.choose_blend(m, history=[{"valid_acc": 0.9}], interpolate=False)
    assert sel.blend == 0.0 and _w(m) == 0.0


@pytest.mark.parametrize("chosen, floor, falls", [(0.6, 0.7, True), (0.7, 0.7, False), (0.8, 0.7, False)])
def test_the_floor_is_loaded_when_the_chosen_model_scored_below_it(chosen, floor, falls):
    """Mutation check: ``falls_back`` not applied (the chosen model always kept) -> fails."""
    m = _Module()
    sel = ModelSelection(score=lambda module: (chosen, 0.1), trained=("training",))
    sel.floor, sel.floor_scores, sel.blend = _at(m, 5.0), (floor, 0.1), 1.0
    m.load_trainable_state_(_at(m, 1.0))
    sel.keep_floor_if_better(m)
    assert sel.fell_back is falls and _w(m) == (5.0 if falls else 1.0) and sel.blend == (0.0 if falls else 1.0)
    assert sel.finetuned is not falls


def test_the_floor_check_reuses_the_score_the_blend_measured():
    """Mutation check: the loaded model scored again instead of ``scores[blend]`` -> fails."""
    m = _Module()
    sel = ModelSelection(score=lambda module: pytest.fail("scored again"), trained=("training",))
    sel.floor, sel.floor_scores, sel.blend, sel.scores = _at(m, 5.0), (0.7, 0.1), 0.5, {0.5: (0.6, 0.1)}
    sel.keep_floor_if_better(m)
    assert sel.fell_back and _w(m) == 5.0


def test_a_fit_whose_every_training_stage_diverged_ends_on_the_floor_without_validation():
    """Mutation check: ``nothing_left`` computed from the contrastive stage alone -> fails."""
    m = _Module()
    sel = ModelSelection(score=None, trained=("contrastive", "training"), diverged=["contrastive", "training"])
    sel.floor = _at(m, 5.0)
    sel.keep_floor_if_better(m)
    assert sel.fell_back and _w(m) == 5.0 and not sel.finetuned
    for undone in (["training"], ["contrastive"]):  # one stage left: what it trained stays
        partial = ModelSelection(score=None, trained=("contrastive", "training"), diverged=undone)
        partial.floor = _at(m, 6.0)
        partial.keep_floor_if_better(m)
        assert not partial.fell_back and _w(m) == 5.0


# -- the choices at work in a fit ----------------------------------------------------------------
SHUFFLE = dict(FAST, max_epochs=3, contrastive_epochs=2, validation_fraction=0.25, learning_rate=3e-2,
               interpolate_weights=True)


class _ShuffledLabels(TokenSparseClassifier):
    """Both training stages see permuted labels: training is useless, yet every loss stays finite."""

    def _shuffled(self, state, stage):
        y = state.y_train
        state.y_train = np.random.default_rng(1).permutation(y)
        try:
            stage(state)
        finally:
            state.y_train = y

    def stage_contrastive(self, state):
        self._shuffled(state, super().stage_contrastive)

    def stage_training(self, state):
        self._shuffled(state, super().stage_training)


def _frozen_probe(model, X, y, **params):
    return TokenSparseClassifier(model, random_state=0, **{**params, "max_epochs": 0, "contrastive_epochs": 0}).fit(X, y)


def test_a_fit_trained_on_shuffled_labels_ends_on_the_frozen_probe(tiny_model, toy_data):
    """Training made useless without a non-finite loss: the floor, not the divergence branch, catches it.

    Mutation check: ``keep_floor_if_better`` made a no-op -> fails (the fit keeps its shuffled finetune).
    """
    X, y = toy_data
    clf = _ShuffledLabels(tiny_model, random_state=0, **SHUFFLE).fit(X, y)
    assert all(np.isfinite(row["train_loss"]) for row in clf.history_[1:])  # not the divergence branch
    assert clf.finetuned_ is False and clf.interpolation_ == 0.0
    probe = _frozen_probe(tiny_model, X, y, **SHUFFLE)
    np.testing.assert_allclose(clf.predict_proba(X), probe.predict_proba(X), rtol=0, atol=1e-6)


def test_a_fit_that_trains_well_keeps_its_finetune(tiny_model, toy_data):
    """The same fit on the true labels leaves the probe, at a validation score no lower than the floor.

    Mutation check: ``falls_back`` returning True always -> fails.
    """
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_model, random_state=0, **SHUFFLE).fit(X, y)
    assert clf.finetuned_ is True
    assert clf.interpolation_scores_[clf.interpolation_][0] >= clf.history_[0]["frozen_probe_valid_acc"]
    probe = _frozen_probe(tiny_model, X, y, **SHUFFLE)
    assert np.abs(clf.predict_proba(X) - probe.predict_proba(X)).max() > 1e-2


# -- extension points ---------------------------------------------------------------------------------
#: The private hooks the public steps replaced: no lab class may still define them.
REMOVED_HOOKS = {"_training_net", "_training_data", "_contrastive_losses", "_select_interpolation", "_sparse_backward"}


def _private_uses(path):
    """Each private, non-dunder name of the estimator (or a removed hook) that ``path`` defines or reads."""
    def private(name):
        return name.startswith("_") and not name.startswith("__") and (
            hasattr(TokenSparseClassifier, name) or name in REMOVED_HOOKS)

    tree, where = ast.parse(path.read_text()), path.relative_to(ROOT)
    defined = [f"{where}:{f.lineno} def {f.name}" for c in ast.walk(tree) if isinstance(c, ast.ClassDef)
               for f in c.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and private(f.name)]
    read = [f"{where}:{a.lineno} .{a.attr}" for a in ast.walk(tree) if isinstance(a, ast.Attribute) and private(a.attr)]
    return defined + read


def test_the_lab_extends_fit_through_public_names_only():
    """Mutation checks: an override of ``_precision`` added to a lab class -> fails; ``self._fit_probe(state)``
    called in a lead -> fails; a leftover ``def _training_net`` -> fails."""
    found = [hit for p in sorted((ROOT / "benchmarks").rglob("*.py")) for hit in _private_uses(p)]
    assert found == []


class _Steps(TokenSparseClassifier):
    """Records which public steps fit called."""

    def get_training_net(self, state, extra_callbacks=()):
        self.called_ = [*getattr(self, "called_", []), "get_training_net"]
        return super().get_training_net(state, extra_callbacks)

    def get_training_data(self, state):
        self.called_ = [*getattr(self, "called_", []), "get_training_data"]
        return super().get_training_data(state)

    def run_contrastive(self, state, **options):
        self.called_ = [*getattr(self, "called_", []), "run_contrastive"]
        return super().run_contrastive(state, **options)


def test_fit_calls_each_public_step_once(tiny_model, toy_data):
    clf = _Steps(tiny_model, random_state=0, **dict(FAST, max_epochs=1, contrastive_epochs=1)).fit(*toy_data)
    assert sorted(clf.called_) == ["get_training_data", "get_training_net", "run_contrastive"]


@pytest.mark.parametrize("step", ["get_training_net", "get_training_data", "run_contrastive"])
def test_the_public_steps_are_documented(step):
    from sksparseft.fit.stages import FitStages

    assert getattr(FitStages, step).__doc__
    assert f"`{step}(" in (ROOT / "docs" / "internals.md").read_text()
