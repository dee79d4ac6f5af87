"""Target kinds: one class per text or a set of labels; weighted losses and the linear probe."""

import numpy as np
import pytest
import torch

from sksparseft.fit.targets import KINDS, MultiLabel, SingleLabel, TargetLoss, target_kind, weighted_score
from sksparseft.fit.training import fit_linear_probe


def test_kind_follows_the_shape_of_the_encoded_labels():
    assert isinstance(target_kind(np.array([0, 1, 2])), SingleLabel)
    assert isinstance(target_kind(np.array([[0, 1], [1, 0]])), MultiLabel)
    assert KINDS[True].multilabel and not KINDS[False].multilabel


@pytest.mark.parametrize("kind,target", [
    (SingleLabel(), torch.tensor([0, 2, 1, 2])),
    (MultiLabel(), torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]])),
])
def test_integer_sample_weights_equal_repeated_rows(kind, target):
    torch.manual_seed(0)
    logits = torch.randn(4, 3)
    weights = torch.tensor([1.0, 3.0, 0.0, 2.0])
    repeat = torch.repeat_interleave(torch.arange(4), weights.long())
    weighted = kind.loss(logits, target, sample_weight=weights)
    torch.testing.assert_close(weighted, kind.loss(logits[repeat], target[repeat]))


def test_class_and_sample_weights_multiply():
    logits, target = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    cw, sw = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([1.0, 1.0, 2.0, 3.0, 0.5])
    expected = SingleLabel().loss(logits, target, sample_weight=sw * cw[target])
    torch.testing.assert_close(TargetLoss(SingleLabel(), cw)(logits, target, sample_weight=sw), expected)
    # Without sample weights the criterion is exactly torch's weighted cross-entropy.
    torch.testing.assert_close(TargetLoss(SingleLabel(), cw)(logits, target),
                               torch.nn.CrossEntropyLoss(weight=cw)(logits, target))


def test_multilabel_scores_are_jaccard_and_probabilities_are_sigmoids():
    kind = MultiLabel()
    logits = torch.tensor([[2.0, -1.0, 3.0], [-1.0, -1.0, -1.0], [1.0, 1.0, -1.0]])
    target = torch.tensor([[1, 1, 1], [0, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(kind.sample_scores(logits, target).numpy(), [2 / 3, 1.0, 0.0])
    assert weighted_score(kind, logits, target, [0.0, 1.0, 1.0]) == pytest.approx(0.5)
    np.testing.assert_allclose(kind.probabilities(logits).numpy(), 1 / (1 + np.exp(-logits.double().numpy())))


def test_weighted_probe_equals_the_probe_on_repeated_rows():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=30)
    w = rng.integers(1, 4, size=30).astype(float)
    a, b = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    fit_linear_probe(a, X, y, sample_weight=w)
    rep = np.repeat(np.arange(30), w.astype(int))
    fit_linear_probe(b, X[rep], y[rep])
    torch.testing.assert_close(a.weight, b.weight, atol=2e-3, rtol=1e-3)


def test_multilabel_probe_is_one_vs_rest_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    Y = (X @ rng.normal(size=(4, 3)) + rng.normal(scale=0.5, size=(60, 3)) > 0).astype(int)
    head = torch.nn.Linear(4, 3)
    fit_linear_probe(head, X, Y, kind=MultiLabel())
    for j in range(3):
        ref = LogisticRegression(C=1.0, tol=1e-8, max_iter=1000).fit(X, Y[:, j])
        np.testing.assert_allclose(head.weight[j].detach().numpy(), ref.coef_[0], atol=2e-3)
        np.testing.assert_allclose(float(head.bias[j].detach()), ref.intercept_[0], atol=2e-3)
