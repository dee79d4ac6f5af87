"""Unknown-intent rejection: ``unknown_label`` / ``unknown_threshold`` through fit, predict, save, exports and the CLI."""

import csv
import importlib.util
import json

import numpy as np
import pytest

from cases import FAST
from sksparseft import TokenSparseClassifier
from sksparseft.cli import EXIT_OK, main

SETTINGS = dict(FAST, random_state=0, learning_rate=1e-2, contrastive_epochs=0)


@pytest.fixture(scope="module")
def rejecting(tiny_model, toy_data):
    X, y = toy_data
    return TokenSparseClassifier(tiny_model, unknown_label="oos", validation_fraction=0.25, **SETTINGS).fit(X, y)


def test_auto_threshold_accepts_most_in_scope_validation_texts(rejecting):
    assert "thresholds" in rejecting.fit_stages_
    assert 0.0 < rejecting.unknown_threshold_ < 1.0
    assert "oos" not in rejecting.classes_


def test_predict_rejects_below_the_threshold_and_score_counts_it(rejecting, toy_data):
    X, y = toy_data
    proba = rejecting.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)  # still the known classes' probabilities
    rejecting_all = TokenSparseClassifier(**rejecting.get_params())
    rejecting_all.__dict__.update({k: v for k, v in rejecting.__dict__.items() if k.endswith("_")})
    rejecting_all.unknown_threshold_ = 1.01  # above every probability
    assert (rejecting_all.predict(X) == "oos").all()
    assert rejecting_all.score(X, y) == 0.0
    rejecting_all.unknown_threshold_ = 0.0
    assert list(rejecting_all.predict(X)) == list(rejecting.classes_[proba.argmax(axis=1)])


def test_float_threshold_and_labelled_unknown_class(tiny_model, toy_data):
    X, y = toy_data
    X2 = list(X) + ["the weather is nice", "tell me a joke", "what time is it", "play some music"] * 2
    y2 = list(y) + ["oos"] * 8
    clf = TokenSparseClassifier(tiny_model, unknown_label="oos", unknown_threshold=0.2, **SETTINGS).fit(X2, y2)
    assert clf.unknown_threshold_ == 0.2
    assert "oos" in clf.classes_  # labelled out-of-scope texts train as a class
    proba = clf.predict_proba(X2)
    pred = clf.predict(X2)
    best = clf.classes_[proba.argmax(axis=1)]
    expected = np.where((proba.max(axis=1) < 0.2) | (best == "oos"), "oos", best)
    assert list(pred) == list(expected)


def test_integer_labels_reject_to_an_integer(tiny_model, toy_data):
    X, y = toy_data
    y_int = np.asarray([{"card": 3, "refund": 5, "pin": 7}[v] for v in y], dtype=np.int32)
    clf = TokenSparseClassifier(tiny_model, unknown_label=-1, unknown_threshold=0.99, **SETTINGS).fit(X, y_int)
    pred = clf.predict(X)
    assert pred.dtype == np.int32 and set(pred) <= {-1, 3, 5, 7} and -1 in set(pred)


@pytest.mark.parametrize("params,y_kind,error,message", [
    ({"unknown_label": 5}, "str", TypeError, "unknown_label=5 cannot be mixed"),
    ({"unknown_label": "oos"}, "int", TypeError, "unknown_label='oos' cannot be mixed"),
    ({"unknown_label": "oos", "validation_fraction": 0.0}, "str", ValueError, "validation_fraction > 0"),
    ({"unknown_label": "oos", "unknown_threshold": 1.5}, "str", ValueError, "unknown_threshold"),
    ({"unknown_label": "oos", "unknown_threshold": "high"}, "str", ValueError, "unknown_threshold"),
])
def test_bad_rejection_settings_fail_early_and_keep_the_fitted_model(rejecting, toy_data, params, y_kind, error, message):
    X, y = toy_data
    if y_kind == "int":
        y = [{"card": 0, "refund": 1, "pin": 2}[v] for v in y]
    before = rejecting.unknown_threshold_
    clf = TokenSparseClassifier(**dict(rejecting.get_params(), **params))
    clf.__dict__.update({k: v for k, v in rejecting.__dict__.items() if k.endswith("_")})
    with pytest.raises(error, match=message):
        clf.fit(X, y)
    assert clf.unknown_threshold_ == before and clf.predict(X[:2]) is not None


def test_save_load_explain_and_exports_carry_the_threshold(rejecting, toy_data, tmp_path):
    X, _ = toy_data
    rejecting_strict = TokenSparseClassifier(**rejecting.get_params())
    rejecting_strict.__dict__.update({k: v for k, v in rejecting.__dict__.items() if k.endswith("_")})
    rejecting_strict.unknown_threshold_ = float(np.median(rejecting.predict_proba(X).max(axis=1)))
    pred = rejecting_strict.predict(X)
    assert (pred == "oos").any() and (pred != "oos").any()
    loaded = TokenSparseClassifier.load(rejecting_strict.save(tmp_path / "m.safetensors"))
    assert loaded.unknown_threshold_ == rejecting_strict.unknown_threshold_ and loaded.unknown_label == "oos"
    assert list(loaded.predict(X)) == list(pred)
    assert [e["prediction"] for e in loaded.explain(X)] == list(pred)
    folder = rejecting_strict.to_huggingface(tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text())
    assert config["sksparseft"]["unknown_label"] == "oos"
    assert config["sksparseft"]["unknown_threshold"] == rejecting_strict.unknown_threshold_
    readme = (folder / "README.md").read_text()
    code = readme.split("```python\n")[1].split("```")[0].replace('folder = "hf"', f'folder = "{folder}"')
    scope = {}
    exec(compile(code, "exported_readme", "exec"), scope)
    assert scope["predict"](X) == [str(p) for p in pred]


def test_cli_sets_the_unknown_label_and_reports_rejection(tiny_model, toy_data, tmp_path):
    X, y = toy_data
    data = tmp_path / "train.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(zip(list(X) + ["tell me a joke"], list(y) + ["oos"]))
    model = tmp_path / "m.safetensors"
    args = ["fit", "--data", str(data), "--model-out", str(model), "--quiet", "--device", "cpu",
            "--set", f"model={tiny_model}", "--set", "max_epochs=1", "--set", "batch_size=8",
            "--set", "n_sensitivity_samples=8", "--set", "contrastive_epochs=0", "--set", "random_state=0",
            "--set", "unknown_label=oos", "--set", "unknown_threshold=0.9"]
    assert main(args) == EXIT_OK
    out = tmp_path / "report.json"
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--output", str(out), "--quiet"]) == EXIT_OK
    report = json.loads(out.read_text())
    assert 0.0 <= report["rejected"] <= 1.0 and "unknown_recall" in report and "in_scope_accuracy" in report


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None,
                    reason="needs onnx, onnxscript and onnxruntime (pip install 'sksparseft[onnx]')")
def test_onnx_export_carries_the_unknown_label_and_threshold(rejecting, tmp_path):
    import onnx

    meta = json.loads({p.key: p.value for p in onnx.load(str(rejecting.to_onnx(tmp_path / "m.onnx"))).metadata_props}
                      ["sksparseft"])
    assert meta["unknown_label"] == "oos" and meta["unknown_threshold"] == rejecting.unknown_threshold_
    assert meta["classes"] == [str(c) for c in rejecting.classes_] and not meta["multilabel"]


def test_auto_rule_accepts_the_target_share_of_in_scope_texts_and_ignores_labelled_unknowns():
    from sksparseft.fit_stages import UNKNOWN_ACCEPTED, _accepting_threshold

    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(4) * 0.3, size=400)
    classes = np.asarray(["a", "b", "oos", "c"], dtype=object)
    y_valid = rng.integers(0, 4, size=400)
    thr = _accepting_threshold(proba, y_valid, classes, "oos")
    in_scope = y_valid != 2
    accepted = (proba[in_scope].max(axis=1) >= thr).mean()
    assert UNKNOWN_ACCEPTED <= accepted <= UNKNOWN_ACCEPTED + 0.01
    # Labelled out-of-scope validation texts do not move the threshold.
    proba_oos = proba.copy()
    proba_oos[~in_scope] = 0.999 / 4
    assert _accepting_threshold(proba_oos, y_valid, classes, "oos") == thr
