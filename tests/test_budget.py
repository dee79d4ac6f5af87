"""The step budget of the cross-entropy finetune (sksparseft.fit.budget) and what a fit reports of it."""

import pickle

import numpy as np
import pytest

from sksparseft import TokenSparseClassifier
from sksparseft.fit.budget import EVERY_EPOCH, STEP_BUDGET, plan_epochs


@pytest.mark.parametrize("n_train, expected", [
    (693, (EVERY_EPOCH, 8)),     # 22 steps an epoch: 176 in all, inside the budget
    (2400, (EVERY_EPOCH, 8)),    # 75 an epoch: exactly 600, still every epoch
    (2401, (EVERY_EPOCH, 8)),    # 76 an epoch: 608 over the budget, but 600 / 76 rounds to all 8
    (2560, (EVERY_EPOCH, 8)),    # 80 an epoch: 600 / 80 = 7.5 rounds to 8 (half to even)
    (2561, (STEP_BUDGET, 7)),    # 81 an epoch: the first size whose epochs are cut
    (7204, (STEP_BUDGET, 3)),    # 226 an epoch: 2.65 rounds to 3
    (9003, (STEP_BUDGET, 2)),    # 282 an epoch: 2.13 rounds to 2
    (13500, (STEP_BUDGET, 1)),   # 422 an epoch: 1.42 rounds to 1
    (10**6, (STEP_BUDGET, 1)),   # never fewer than one epoch
])
def test_plan_epochs_runs_every_epoch_inside_the_budget_and_the_rounded_budget_past_it(n_train, expected):
    plan = plan_epochs(n_train, 32, 8, 600)
    assert (plan["regime"], plan["epochs"]) == expected
    assert plan["steps_per_epoch"] == -(-n_train // 32) and plan["max_steps"] == 600


def test_plan_epochs_never_exceeds_max_epochs_and_none_is_no_budget():
    assert plan_epochs(100, 32, 3, 10_000)["epochs"] == 3
    assert plan_epochs(10**6, 32, 8, None) == {"regime": EVERY_EPOCH, "epochs": 8, "steps_per_epoch": 31250,
                                               "max_steps": None}
    assert plan_epochs(100, 32, 0, 600)["epochs"] == 0  # max_epochs=0: no cross-entropy stage
    # Past the budget, the rounded budget: 100 steps over 94 an epoch is one epoch of two.
    assert plan_epochs(3000, 32, 2, 100) == {"regime": STEP_BUDGET, "epochs": 1, "steps_per_epoch": 94,
                                             "max_steps": 100}


# 48 toy texts, 5 held out: 43 train in 6 batches of 8 an epoch; patience 0 runs every planned epoch.
PARAMS = dict(batch_size=8, device="cpu", random_state=0, patience=0)


def test_a_fit_past_the_budget_is_the_fit_of_its_planned_epochs(tiny_model, toy_data):
    texts, labels = toy_data
    budgeted = TokenSparseClassifier(model=tiny_model, max_epochs=4, max_steps=12, **PARAMS).fit(texts, labels)
    assert budgeted.finetune_plan_ == {"regime": STEP_BUDGET, "epochs": 2, "steps_per_epoch": 6, "max_steps": 12}
    assert len(budgeted.history_) - 1 == 2  # row 0 is the probe where the finetune started
    # Whole epochs, and the learning rate decays over them: the same model as asking for 2 epochs.
    two = TokenSparseClassifier(model=tiny_model, max_epochs=2, max_steps=None, **PARAMS).fit(texts, labels)
    np.testing.assert_array_equal(budgeted.predict_proba(texts), two.predict_proba(texts))
    four = TokenSparseClassifier(model=tiny_model, max_epochs=4, max_steps=None, **PARAMS).fit(texts, labels)
    assert len(four.history_) - 1 == 4
    assert not np.array_equal(budgeted.predict_proba(texts), four.predict_proba(texts))


def test_a_fit_inside_the_budget_runs_every_epoch_as_without_one(tiny_model, toy_data):
    texts, labels = toy_data
    inside = TokenSparseClassifier(model=tiny_model, max_epochs=3, max_steps=18, **PARAMS).fit(texts, labels)
    assert inside.finetune_plan_["regime"] == EVERY_EPOCH and inside.finetune_plan_["epochs"] == 3
    unbudgeted = TokenSparseClassifier(model=tiny_model, max_epochs=3, max_steps=None, **PARAMS).fit(texts, labels)
    np.testing.assert_array_equal(inside.predict_proba(texts), unbudgeted.predict_proba(texts))
    assert len(inside.history_) == len(unbudgeted.history_) == 4


def test_the_regime_follows_the_data_at_the_same_parameters(tiny_model, toy_data):
    texts, labels = toy_data
    est = TokenSparseClassifier(model=tiny_model, max_epochs=3, max_steps=18, **PARAMS)
    few = est.fit(texts[::2], labels[::2]).finetune_plan_  # 24 texts, 21 train: 3 steps an epoch, 9 in all
    many = est.fit(texts * 2, labels * 2).finetune_plan_  # 96 texts: 11 steps an epoch, 33 in all
    assert few["regime"] == EVERY_EPOCH and few["epochs"] == 3
    assert many["regime"] == STEP_BUDGET and many["epochs"] == 2  # 18 / 11 rounds to 2


def test_the_plan_survives_save_and_pickle(tiny_model, toy_data, tmp_path):
    texts, labels = toy_data
    est = TokenSparseClassifier(model=tiny_model, max_epochs=4, max_steps=12, **PARAMS).fit(texts, labels)
    est.save(tmp_path / "m")
    assert TokenSparseClassifier.load(tmp_path / "m").finetune_plan_ == est.finetune_plan_
    assert pickle.loads(pickle.dumps(est)).finetune_plan_ == est.finetune_plan_


def test_max_steps_is_checked_before_anything_loads(toy_data):
    texts, labels = toy_data
    with pytest.raises(ValueError, match="max_steps"):
        TokenSparseClassifier(model="no-such-model", max_steps=0).fit(texts, labels)


def test_budgets_that_do_not_bind_change_nothing(tiny_model, toy_data):
    # Budgets above what a small set needs (6 steps an epoch here) leave the fit as without them, bit for bit.
    texts, labels = toy_data
    params = dict(model=tiny_model, batch_size=8, device="cpu", random_state=0)
    budgeted = TokenSparseClassifier(max_steps=600, contrastive_max_steps=64, **params).fit(texts, labels)
    unbudgeted = TokenSparseClassifier(max_steps=None, contrastive_max_steps=None, **params).fit(texts, labels)
    assert budgeted.finetune_plan_["regime"] == unbudgeted.finetune_plan_["regime"] == EVERY_EPOCH
    np.testing.assert_array_equal(budgeted.predict_proba(texts), unbudgeted.predict_proba(texts))
