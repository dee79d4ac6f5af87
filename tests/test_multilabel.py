"""Multi-label classification: a 2-D 0/1 indicator ``y`` through fit, predict, save, explain, exports and the CLI."""

import csv
import json

import numpy as np
import pandas as pd
import pytest

from cases import FAST, NEEDS_ONNX, run_onnx
from sksparseft import TokenSparseClassifier
from sksparseft.cli import EXIT_OK, main

SETTINGS = dict(FAST, random_state=0, learning_rate=1e-2)
LABELS = ["card", "refund", "pin"]


@pytest.fixture(scope="module")
def joined(toy_data):
    """Messages of one or two requests, labelled with each request's intent."""
    X, y = toy_data
    rng = np.random.default_rng(0)
    texts, rows = [], []
    for i in range(len(X)):
        j = int(rng.integers(len(X)))
        labels = {y[i]}
        text = X[i]
        if i % 2 and y[j] != y[i]:
            text, labels = f"{X[i]} and also {X[j]}", {y[i], y[j]}
        texts.append(text)
        rows.append([int(name in labels) for name in LABELS])
    return texts, pd.DataFrame(rows, columns=LABELS)


@pytest.fixture(scope="module")
def fitted(tiny_model, joined):
    X, Y = joined
    return TokenSparseClassifier(tiny_model, **SETTINGS).fit(X, Y)


def test_indicator_y_fits_a_multilabel_model(fitted, joined):
    X, Y = joined
    assert fitted.multilabel_ and list(fitted.classes_) == [0, 1, 2] and fitted.label_names_ == LABELS
    assert fitted.strategy_["strategy"] == "random" and "thresholds" in fitted.fit_stages_
    assert "contrastive" in fitted.fit_stages_ and "training" in fitted.fit_stages_  # the default fit's stages
    assert {g.label for g in fitted.token_groups_} <= {0, 1, 2}
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 3) and ((proba >= 0) & (proba <= 1)).all()
    assert not np.allclose(proba.sum(axis=1), 1.0)  # a sigmoid per label, not a softmax
    pred = fitted.predict(X)
    assert pred.shape == (len(X), 3) and set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, (proba >= 0.5).astype(int))
    assert 0.0 <= fitted.score(X, Y) <= 1.0  # subset accuracy, as scikit-learn scores multi-label
    assert fitted.predict([]).shape == (0, 3)


def _f1(pred, positives):
    return 2 * float((pred & positives).sum()) / max(float(pred.sum() + positives.sum()), 1.0)


def test_auto_thresholds_are_chosen_per_label_for_the_best_validation_f1(tiny_model, joined, monkeypatch):
    import sksparseft.fit.stages as fit_stages

    X, Y = joined
    # A fourth label on which 0.5 is a bad threshold: every second text ends in "asap", and 2 in 5 of
    # those (no other text) are "urgent". The best a model can say of an "asap" text is about 0.4,
    # so at 0.5 no text is urgent (F1 0), while a lower threshold finds them.
    asap = np.arange(len(X)) % 2 == 0
    X = [f"{t} asap" if a else t for t, a in zip(X, asap)]
    Y = Y.assign(urgent=[int(a and (i // 2) % 5 in (0, 2)) for i, a in enumerate(asap)])
    seen = {}
    choose = fit_stages.best_f1_thresholds

    def spy(proba, y_valid):  # the held-out probabilities the thresholds are chosen on
        seen["proba"], seen["y"] = proba, np.asarray(y_valid) > 0
        return choose(proba, y_valid)

    monkeypatch.setattr(fit_stages, "best_f1_thresholds", spy)
    clf = TokenSparseClassifier(tiny_model, multilabel_threshold="auto", validation_fraction=0.3, **SETTINGS).fit(X, Y)
    assert clf.thresholds_.shape == (4,) and ((clf.thresholds_ > 0) & (clf.thresholds_ < 1)).all()
    np.testing.assert_array_equal(clf.predict(X), (clf.predict_proba(X) >= clf.thresholds_).astype(int))
    proba, y_valid = seen["proba"], seen["y"]
    assert y_valid[:, 3].any()  # the validation split holds urgent texts
    for j in range(4):  # per label, at least the validation F1 of 0.5
        assert _f1(proba[:, j] >= clf.thresholds_[j], y_valid[:, j]) >= _f1(proba[:, j] >= 0.5, y_valid[:, j]), j
    # On the badly calibrated label: a threshold of its own, below 0.5, and a better F1.
    assert clf.thresholds_[3] < 0.5 and len(set(clf.thresholds_.tolist())) > 1
    assert _f1(proba[:, 3] >= clf.thresholds_[3], y_valid[:, 3]) > _f1(proba[:, 3] >= 0.5, y_valid[:, 3])


@pytest.mark.parametrize("y_change,params,message", [
    (lambda Y: Y.assign(pin=0), {}, r"y column 2 \('pin'\) is all zero"),
    (lambda Y: Y.assign(card=1), {}, r"y column 0 \('card'\) is all one"),
    (lambda Y: Y.assign(card=Y["card"] * 2), {}, "0/1 indicator"),
    (lambda Y: Y, {"class_weight": "balanced"}, "sample_weight"),
    (lambda Y: Y, {"unknown_label": "oos"}, "unknown_label applies to one label per text"),
    (lambda Y: Y, {"multilabel_threshold": "auto", "validation_fraction": 0.0}, "validation_fraction > 0"),
])
def test_bad_multilabel_input_fails_early(tiny_model, joined, y_change, params, message):
    X, Y = joined
    with pytest.raises(ValueError, match=message):
        TokenSparseClassifier(tiny_model, **dict(SETTINGS, **params)).fit(X, y_change(Y))


def test_save_load_and_explain(fitted, joined, tmp_path):
    X, _ = joined
    loaded = TokenSparseClassifier.load(fitted.save(tmp_path / "m.safetensors"))
    assert loaded.multilabel_ and loaded.label_names_ == LABELS
    np.testing.assert_array_equal(loaded.thresholds_, fitted.thresholds_)
    np.testing.assert_allclose(loaded.predict_proba(X), fitted.predict_proba(X), atol=1e-6)
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    explained = loaded.explain(X[:4])
    for e, row in zip(explained, fitted.predict(X[:4])):
        np.testing.assert_array_equal(e["prediction"], row)
        assert e["class"] in fitted.classes_


def test_huggingface_export_predicts_label_sets(fitted, joined, tmp_path):
    X, _ = joined
    folder = fitted.to_huggingface(tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert config["sksparseft"]["multilabel"] and len(config["sksparseft"]["thresholds"]) == 3
    assert [config["id2label"][str(i)] for i in range(3)] == LABELS
    code = (folder / "README.md").read_text().split("```python\n")[1].split("```")[0]
    scope = {}
    exec(compile(code.replace('folder = "hf"', f'folder = "{folder}"'), "exported_readme", "exec"), scope)
    np.testing.assert_allclose(scope["predict_proba"](X[:6]).numpy(), fitted.predict_proba(X[:6]), atol=1e-5)
    expected = [[LABELS[j] for j in np.flatnonzero(row)] for row in fitted.predict(X[:6])]
    assert scope["predict"](X[:6]) == expected


@NEEDS_ONNX
def test_onnx_export_gives_per_label_probabilities_and_thresholds(fitted, joined, tmp_path):
    X, _ = joined
    meta, (proba,) = run_onnx(fitted.to_onnx(tmp_path / "m.onnx"), fitted, X[:5])
    assert meta["multilabel"] and meta["classes"] == LABELS and len(meta["thresholds"]) == 3
    np.testing.assert_allclose(proba, fitted.predict_proba(X[:5]), atol=1e-4)


def test_cli_fits_and_predicts_label_sets(tiny_model, joined, tmp_path):
    X, Y = joined
    data = tmp_path / "train.csv"
    cells = ["|".join(n for n in LABELS if row[n]) for _, row in Y.iterrows()]
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "labels"])
        w.writerows(zip(X, cells))
    model = tmp_path / "m.safetensors"
    args = ["fit", "--data", str(data), "--label-column", "labels", "--label-sep", "|", "--model-out", str(model),
            "--quiet", "--device", "cpu", "--set", f"model={tiny_model}", "--set", "max_epochs=1",
            "--set", "batch_size=8", "--set", "random_state=0"]
    assert main(args) == EXIT_OK
    clf = TokenSparseClassifier.load(model)
    assert clf.multilabel_ and clf.label_names_ == sorted(LABELS)
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(model), "--data", str(data), "--output", str(out), "--proba", "--quiet"]) == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == len(X) and set(rows[0]) == {"text", "prediction"} | {f"proba_{n}" for n in sorted(LABELS)}
    assert all(set(filter(None, r["prediction"].split("|"))) <= set(LABELS) for r in rows)
    report = tmp_path / "report.json"
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--label-column", "labels",
                 "--output", str(report), "--quiet"]) == EXIT_OK
    result = json.loads(report.read_text())
    assert 0.0 <= result["micro_f1"] <= 1.0 and result["unknown_labels"] == []
