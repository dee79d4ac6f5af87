"""``fit(X, y, sample_weight=...)`` and the inputs people pass: pandas, object arrays, label dtypes."""

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from cases import FAST
from sksparseft import TokenSparseClassifier

# float32: in bf16 the weighted and unweighted fits differ by rounding (up to 4e-4 in a probability
# on a CPU with native bf16), beyond the 1e-4 the unit-weight test allows.
SETTINGS = dict(FAST, random_state=0, learning_rate=1e-2, contrastive_epochs=0, precision="float32")


@pytest.mark.parametrize("weights,error,message", [
    (np.ones(5), ValueError, "sample_weight has 5 entries for 48 texts"),
    (-np.ones(48), ValueError, r"sample_weight\[0\] is negative"),
    (np.r_[np.ones(47), np.nan], ValueError, r"sample_weight\[47\] is nan"),
    (np.zeros(48), ValueError, "sample_weight is zero for every text"),
    (np.ones((48, 2)), ValueError, "sample_weight must be one-dimensional"),
    (["a"] * 48, TypeError, "sample_weight must be an array of numbers"),
])
def test_bad_sample_weight_fails_early_naming_it(tiny_model, toy_data, weights, error, message):
    X, y = toy_data
    with pytest.raises(error, match=message):
        TokenSparseClassifier(tiny_model, **SETTINGS).fit(X, y, sample_weight=weights)


def test_weighting_a_class_up_moves_predictions_towards_it(tiny_model, toy_data):
    X, y = toy_data
    y = np.asarray(y, dtype=object)
    # A frozen backbone (probe and head refit only) makes the effect of the weights plain to see.
    params = dict(SETTINGS, strategy="bitfit", max_epochs=1, validation_fraction=0.0)
    ambiguous = ["my card and my pin and a refund", "the card", "the pin", "a refund for the card pin"]
    plain = TokenSparseClassifier(tiny_model, **params).fit(X, y)
    heavy = TokenSparseClassifier(tiny_model, **params).fit(X, y, sample_weight=np.where(y == "refund", 20.0, 1.0))
    col = list(plain.classes_).index("refund")
    assert (heavy.predict_proba(ambiguous)[:, col] > plain.predict_proba(ambiguous)[:, col]).all()
    assert (heavy.predict(ambiguous) == "refund").sum() >= (plain.predict(ambiguous) == "refund").sum()


@pytest.mark.parametrize("heavy", ["card", "pin"])
def test_heavy_weights_on_contradictory_duplicates_decide_their_label(tiny_model, toy_data, heavy):
    # The default fit (contrastive stage on, random mask, validation split), one short epoch.
    X, y = toy_data
    probe, k = "please look into my account", 4
    texts, labels = list(X) + [probe] * (2 * k), list(y) + ["card"] * k + ["pin"] * k
    weights = np.r_[np.ones(len(X)), np.where(np.asarray(labels[len(X):]) == heavy, 10.0, 0.1)]
    clf = TokenSparseClassifier(tiny_model, **dict(FAST, random_state=0, max_epochs=1)).fit(texts, labels, sample_weight=weights)
    assert "contrastive" in clf.fit_stages_ and "training" in clf.fit_stages_
    # The same text, labelled both ways: the heavily weighted copies win.
    assert clf.predict([probe])[0] == heavy
    proba = clf.predict_proba([probe])[0]
    assert proba[list(clf.classes_).index(heavy)] > 0.5


def test_integer_weights_approximate_repeated_rows(tiny_model, toy_data):
    X, y = toy_data
    w = np.tile([1, 2, 3], len(X) // 3)
    rep = np.repeat(np.arange(len(X)), w)
    params = dict(SETTINGS, strategy="bitfit", max_epochs=1, validation_fraction=0.0)
    weighted = TokenSparseClassifier(tiny_model, **params).fit(X, y, sample_weight=w)
    repeated = TokenSparseClassifier(tiny_model, **params).fit([X[i] for i in rep], [y[i] for i in rep])
    uniform = TokenSparseClassifier(tiny_model, **params).fit(X, y)
    pw, pr, pu = (m.predict_proba(X) for m in (weighted, repeated, uniform))
    assert np.abs(pw - pr).mean() < np.abs(pu - pr).mean()


def test_unit_weights_give_the_unweighted_fit(tiny_model, toy_data):
    # Weights are repetitions (as in scikit-learn): all 1 is the unweighted fit; all 2 would
    # be every row twice, which regularises the probe less.
    X, y = toy_data
    a = TokenSparseClassifier(tiny_model, **SETTINGS).fit(X, y)
    b = TokenSparseClassifier(tiny_model, **SETTINGS).fit(X, y, sample_weight=np.ones(len(X)))
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-4)


def test_zero_weight_texts_do_not_count(tiny_model, toy_data):
    X, y = toy_data
    noise = ["card refund pin"] * 6
    w = np.r_[np.ones(len(X)), np.zeros(6)]
    a = TokenSparseClassifier(tiny_model, **dict(SETTINGS, validation_fraction=0.0)).fit(X, y)
    b = TokenSparseClassifier(tiny_model, **dict(SETTINGS, validation_fraction=0.0)).fit(
        list(X) + noise, list(y) + ["pin"] * 6, sample_weight=w)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=0.05)


def test_sample_weight_passes_through_pipeline_and_grid_search(tiny_model, toy_data):
    X, y = toy_data
    w = np.ones(len(X))
    pipe = Pipeline([("clf", TokenSparseClassifier(tiny_model, **dict(SETTINGS, max_epochs=1)))])
    pipe.fit(X, y, clf__sample_weight=w)
    search = GridSearchCV(TokenSparseClassifier(tiny_model, **dict(SETTINGS, max_epochs=1)),
                          {"strategy_options": [{"density": 0.01}, {"density": 0.05}]}, cv=2)
    search.fit(np.asarray(X, dtype=object), np.asarray(y, dtype=object), sample_weight=w)
    assert search.best_params_["strategy_options"]["density"] in (0.01, 0.05)


def test_pandas_and_object_array_inputs(tiny_model, toy_data):
    X, y = toy_data
    labels = {"card": 10, "refund": 20, "pin": 30}
    y_int = pd.Series([labels[v] for v in y], index=np.arange(100, 100 + len(y)), dtype="int64")
    X_series = pd.Series(X, index=y_int.index)
    clf = TokenSparseClassifier(tiny_model, **SETTINGS).fit(X_series, y_int)
    assert clf.predict(X[:4]).dtype == np.int64 and set(clf.predict(X)) <= set(labels.values())
    for form in (X_series, pd.DataFrame({"text": X}), np.asarray(X, dtype=object), X_series.to_numpy()):
        np.testing.assert_array_equal(clf.predict(form), clf.predict(X))
    with pytest.raises(ValueError, match="one-dimensional"):
        clf.predict(pd.DataFrame({"a": X, "b": X}))
    int32 = TokenSparseClassifier(tiny_model, **SETTINGS).fit(X, np.asarray(y_int, dtype=np.int32))
    assert int32.predict(X[:3]).dtype == np.int32 and int32.classes_.dtype == np.int32
    strings = TokenSparseClassifier(tiny_model, **SETTINGS).fit(X, pd.Series(y, dtype="category"))
    assert set(strings.predict(X)) <= {"card", "refund", "pin"}


def test_cli_reads_weights_from_a_column(tiny_model, toy_data, tmp_path):
    import csv

    from sksparseft.cli import EXIT_INPUT, EXIT_OK, main

    X, y = toy_data
    data = tmp_path / "train.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "weight"])
        w.writerows((t, c, 3 if c == "refund" else 1) for t, c in zip(X, y))
    args = ["fit", "--data", str(data), "--model-out", str(tmp_path / "m.safetensors"), "--quiet", "--device", "cpu",
            "--set", f"model={tiny_model}", "--set", "max_epochs=1", "--set", "batch_size=8",
            "--set", "random_state=0"]
    assert main(args + ["--weight-column", "weight"]) == EXIT_OK
    assert TokenSparseClassifier.load(tmp_path / "m.safetensors").classes_.tolist() == ["card", "pin", "refund"]
    assert main(args + ["--weight-column", "label"]) == EXIT_INPUT  # not numbers
    assert main(args + ["--weight-column", "missing"]) == EXIT_INPUT
