"""scikit-learn's estimator checks skip text estimators: the text-input equivalents that apply, as one battery.

Each check runs on the default estimator and on one adapter strategy, over the same fitted models.
"""

import pickle

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted as assert_fitted

from cases import FAST
from sksparseft import TokenSparseClassifier
from sksparseft.io.fitted import FITTED

SETTINGS = {"default": {}, "lora": {"strategy": "lora", "strategy_options": {"r": 2}}}


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def setup(request, tiny_model, toy_data):
    X, y = toy_data
    est = TokenSparseClassifier(tiny_model, random_state=0, **FAST, **SETTINGS[request.param])
    return est, X, np.asarray(y, dtype=object), clone(est).fit(X, np.asarray(y, dtype=object))


def check_is_a_classifier_with_text_tags(est, X, y, fitted):
    assert is_classifier(est)
    tags = est.__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array


def check_clone_keeps_parameters_and_drops_fitted_state(est, X, y, fitted):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not any(hasattr(copy, name) for name in FITTED)


def check_get_set_params_round_trip(est, X, y, fitted):
    params = est.get_params()
    other = clone(est).set_params(strategy_options={"density": 0.5}, max_epochs=7)
    assert other.get_params()["strategy_options"] == {"density": 0.5} and other.get_params()["max_epochs"] == 7
    other.set_params(**params)
    assert other.get_params() == params


def check_init_stores_parameters_only(est, X, y, fitted):
    fresh = TokenSparseClassifier(est.model, max_steps=0, strategy_options={"x": 1})
    assert fresh.max_steps == 0 and fresh.strategy_options == {"x": 1}  # nothing checked or copied yet
    assert not any(hasattr(fresh, name) for name in FITTED)


def check_unfitted_predict_raises(est, X, y, fitted):
    for method in ("predict", "predict_proba", "decision_function"):
        with pytest.raises(NotFittedError):
            getattr(clone(est), method)(X[:2])


def check_fit_returns_self_and_sets_every_fitted_attribute(est, X, y, fitted):
    assert_fitted(fitted)
    assert all(hasattr(fitted, name) for name in FITTED)


def check_fit_does_not_mutate_its_inputs(est, X, y, fitted):
    X_list, y_arr = list(X), y.copy()
    clone(est).set_params(max_epochs=1).fit(X_list, y_arr)
    assert X_list == list(X)
    np.testing.assert_array_equal(y_arr, y)


def check_fit_twice_gives_the_same_model(est, X, y, fitted):
    again = clone(est).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), fitted.predict_proba(X))


def check_refit_forgets_the_previous_fit(est, X, y, fitted):
    keep = y != "pin"
    refit = clone(est).set_params(max_epochs=1)
    refit.fit(X, y)
    refit.fit([t for t, k in zip(X, keep) if k], y[keep])
    assert list(refit.classes_) == ["card", "refund"]
    assert refit.predict_proba(X[:3]).shape == (3, 2)


def check_classes_are_sorted_and_follow_the_proba_columns(est, X, y, fitted):
    assert list(fitted.classes_) == sorted(set(y))
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), len(fitted.classes_))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    # Each class's column is highest on that class's own texts.
    for j, c in enumerate(fitted.classes_):
        assert proba[y == c, j].mean() > proba[y != c, j].mean()


def check_predict_agrees_with_proba_and_decision_function(est, X, y, fitted):
    proba, logits = fitted.predict_proba(X), fitted.decision_function(X)
    assert list(fitted.predict(X)) == list(fitted.classes_[proba.argmax(1)])
    np.testing.assert_array_equal(proba.argmax(1), logits.argmax(1))


def check_score_is_the_accuracy_of_predict(est, X, y, fitted):
    assert fitted.score(X, y) == pytest.approx(np.mean(fitted.predict(X) == y))


def check_pickle_round_trip_predicts_the_same(est, X, y, fitted):
    back = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(back.predict_proba(X), fitted.predict_proba(X))
    assert back.get_params() == fitted.get_params()


def check_labels_keep_their_type(est, X, y, fitted):
    y_int = np.searchsorted(sorted(set(y)), y) + 10
    clf = clone(est).set_params(max_epochs=1).fit(X, y_int)
    assert clf.classes_.dtype.kind == "i" and clf.predict(X[:2]).dtype.kind == "i"


def check_single_and_empty_inputs(est, X, y, fitted):
    assert fitted.predict(X[:1]).shape == (1,)
    assert fitted.predict([]).shape == (0,)
    assert fitted.predict_proba([]).shape == (0, len(fitted.classes_))


CHECKS = [v for k, v in dict(globals()).items() if k.startswith("check_") and callable(v)]


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__[len("check_"):] for c in CHECKS])
def test_estimator_check(check, setup):
    check(*setup)
