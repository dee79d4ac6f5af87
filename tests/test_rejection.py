"""The rejection helpers (fit/rejection.py) on known arrays and a tiny backbone.

tests/test_unknown.py covers rejection through the estimator, the threshold's coverage on a
large sample and out-of-fold scores against in-sample ones; here: the exact quantile rule,
fold hygiene, the known-class score and the frozen copy.
"""

import math

import numpy as np
import pytest
import torch

from cases import tiny_batch
from sksparseft.fit.rejection import best_known, conformal_threshold, frozen_copy, out_of_fold_scores
from sksparseft.model.backbone import load_backbone


@pytest.fixture(autouse=True)
def _one_thread():
    """The probe's many tiny LBFGS steps: on a busy machine, thread hand-offs cost more than the work."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("n, accepted, k", [
    (19, 0.95, 1),  # floor(0.05 * 20) = 1: the smallest score
    (39, 0.95, 2),
    (59, 0.95, 3),
    (58, 0.95, 2),  # floor(0.05 * 59) = 2
    (9, 0.5, 5),  # floor(0.5 * 10) = 5: the median
    (39, 0.9, 4),  # floor(0.1 * 40) = 4
])
def test_conformal_threshold_is_the_floor_alpha_n_plus_1_th_smallest_score(n, accepted, k):
    scores = np.random.default_rng(n).permutation(np.arange(1, n + 1) / (n + 1))  # unsorted, distinct
    assert conformal_threshold(scores, accepted) == pytest.approx(k / (n + 1))
    # accepted share on the calibration scores themselves: the rule's (n + 1 - k) / n >= accepted
    assert (scores >= conformal_threshold(scores, accepted)).mean() >= accepted


@pytest.mark.parametrize("n, accepted", [(18, 0.95), (0, 0.95), (3, 0.8), (1, 0.6)])
def test_too_few_scores_to_reject_any_accept_all(n, accepted):
    assert math.floor((1 - accepted) * (n + 1) + 1e-9) == 0
    assert conformal_threshold(np.linspace(0.5, 0.9, n), accepted) == 0.0


def test_conformal_threshold_does_not_change_its_input_and_takes_lists():
    scores = [0.9, 0.1, 0.5, 0.3] * 5  # n = 20: k = floor(0.05 * 21) = 1
    before = list(scores)
    assert conformal_threshold(scores) == pytest.approx(0.1)
    assert scores == before


def test_best_known_leaves_out_the_unknown_columns():
    proba = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.2, 0.6]])
    np.testing.assert_allclose(best_known(proba), [0.6, 0.5, 0.6])
    np.testing.assert_allclose(best_known(proba, [1]), [0.3, 0.5, 0.6])
    np.testing.assert_allclose(best_known(proba, (1, 2)), [0.1, 0.5, 0.2])
    np.testing.assert_allclose(best_known(proba, np.array([0])), [0.6, 0.3, 0.6])
    assert proba.shape == (3, 3)  # not changed in place
    np.testing.assert_allclose(best_known(proba.tolist(), [2]), [0.6, 0.5, 0.2])


def _memorisable(n_texts, seed=0, n_classes=3, dim=40):
    """Random labels on more dimensions than texts: a probe fitted on a text is sure of it, one that never saw it guesses."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_texts) % n_classes
    features = (rng.normal(size=(n_texts, dim)) * 3).astype(np.float32)
    return features, y


def _clusters(n_texts, n_classes=3):
    rng = np.random.default_rng(0)
    y = np.arange(n_texts) % n_classes
    return (np.eye(n_classes)[y] * 6 + rng.normal(size=(n_texts, n_classes))).astype(np.float32), y


def test_out_of_fold_scores_are_probabilities_reproducible_by_seed():
    features, y = _clusters(15)
    a = out_of_fold_scores(features, y, 3, seed=1)
    b = out_of_fold_scores(features, y, 3, seed=1)
    assert a.shape == (15,) and ((a >= 1 / 3 - 1e-6) & (a <= 1)).all()
    np.testing.assert_array_equal(a, b)


def test_out_of_fold_scores_leave_out_the_unknown_class():
    features, y = _clusters(30)
    plain = out_of_fold_scores(features, y, 3, seed=0)
    scores = out_of_fold_scores(features, y, 3, unknown=(2,), seed=0)
    unknown = y == 2
    assert (plain > 0.8).all()
    np.testing.assert_allclose(scores[~unknown], plain[~unknown], atol=1e-6)
    assert (scores[unknown] < 0.2).all()  # the probe puts them in the unknown class: rejected


def test_out_of_fold_scores_with_a_class_of_one_text():
    features, y = _clusters(12, 4)
    y[0] = 3  # a class with a single text: no stratification possible
    scores = out_of_fold_scores(features, y, 4, seed=0)
    assert scores.shape == (12,) and np.isfinite(scores).all()


def test_a_text_given_twice_is_never_scored_by_a_probe_that_saw_its_copy():
    """Copies of a text must fall in one fold: a probe fitted on one copy is sure of the other."""
    features, y = _memorisable(21)
    twice_f, twice_y = np.concatenate([features, features]), np.concatenate([y, y])
    scores = out_of_fold_scores(twice_f, twice_y, 3, seed=0)
    np.testing.assert_allclose(scores[:21], scores[21:], atol=1e-6)  # same fold, same probe


def test_frozen_copy_is_frozen_in_eval_and_independent_of_the_original(tiny_model):
    tok, encoder, _ = load_backbone(tiny_model)
    encoder.train()
    rejector = frozen_copy(encoder, 4, "cls")
    assert not rejector.training and not any(m.training for m in rejector.modules())
    assert not any(p.requires_grad for p in rejector.parameters())
    assert rejector.head.out_features == 4 and rejector.head.in_features == encoder.config.hidden_size
    assert rejector.pooling == "cls" and rejector.dropout.p == 0.0
    assert encoder.training and all(p.requires_grad for p in encoder.parameters())  # the original is untouched

    ids, mask, _ = tiny_batch(tok)
    before = rejector.features(ids, mask).detach().clone()
    own = {id(p) for p in encoder.parameters()}
    assert not any(id(p) in own for p in rejector.encoder.parameters())
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(0.5)  # the original trains on
    after = rejector.features(ids, mask)
    torch.testing.assert_close(after, before)
    encoder.eval()
    with torch.no_grad():
        moved = encoder(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
    assert not torch.allclose(moved, after)
