"""Unknown-intent rejection: ``unknown_label`` / ``unknown_threshold`` through fit, predict, save, exports and the CLI."""

import csv
import json
import pickle

import numpy as np
import pytest
import torch

from cases import FAST, NEEDS_ONNX, run_onnx
from sksparseft import TokenSparseClassifier
from sksparseft.cli import EXIT_OK, main

SETTINGS = dict(FAST, random_state=0, learning_rate=1e-2, contrastive_epochs=0)


@pytest.fixture(scope="module")
def rejecting(tiny_model, toy_data):
    X, y = toy_data
    return TokenSparseClassifier(tiny_model, unknown_label="oos", validation_fraction=0.25, **SETTINGS).fit(X, y)


def test_auto_threshold_accepts_most_in_scope_training_texts_and_predict_rejects_below_it(rejecting, toy_data):
    X, y = toy_data
    assert "rejection" in rejecting.fit_stages_ and "thresholds" not in rejecting.fit_stages_
    assert "oos" not in rejecting.classes_
    scores = rejecting.rejection_score(X)
    assert scores.shape == (len(X),) and ((scores > 0) & (scores <= 1)).all()
    # Out-of-fold calibration at 95%: the final probe (fitted on every text) accepts most of them.
    assert (scores >= rejecting.unknown_threshold_).mean() >= 0.9
    # predict rejects exactly the texts whose score is below the threshold (one between the scores here).
    strict = TokenSparseClassifier(**rejecting.get_params())
    strict.__dict__.update({k: v for k, v in rejecting.__dict__.items() if k.endswith("_")})
    strict.unknown_threshold_ = float(np.median(scores))
    pred = strict.predict(X)
    assert (pred == "oos").any() and list(pred == "oos") == list(scores < strict.unknown_threshold_)
    assert list(strict.predict(t for t in X)) == list(pred)  # a generator is read once


def test_rejection_scores_come_from_the_frozen_backbone(rejecting, toy_data):
    X, _ = toy_data
    frozen = TokenSparseClassifier(**dict(rejecting.get_params(), max_epochs=0, contrastive_epochs=0,
                                          unknown_label=None)).fit(*toy_data)
    # The rejector is the pretrained backbone: its features are the untrained model's, whatever fit trained.
    encoder, twin = rejecting.rejector_.encoder.state_dict(), frozen.module_.encoder.state_dict()
    assert list(encoder) == list(twin)
    for name in encoder:
        assert torch.equal(encoder[name], twin[name]), name
    assert not torch.equal(rejecting.module_.encoder.state_dict()["encoder.layer.1.output.dense.weight"],
                           encoder["encoder.layer.1.output.dense.weight"])


def test_a_fit_with_the_contrastive_stage_calibrates_its_threshold_without_a_validation_split(tiny_model, toy_data):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_model, unknown_label="oos", random_state=0, max_epochs=1, batch_size=8,
                                device="cpu", validation_fraction=0.0).fit(X, y)
    assert clf.contrastive_epochs > 0 and "contrastive" in clf.fit_stages_
    assert 0.0 < clf.unknown_threshold_ < 1.0
    assert (clf.rejection_score(X) >= clf.unknown_threshold_).mean() >= 0.9


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
    expected = np.where((clf.rejection_score(X2) < 0.2) | (best == "oos"), "oos", best)
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


def test_save_load_pickle_explain_and_exports_carry_the_threshold_and_rejector(rejecting, toy_data, tmp_path):
    X, _ = toy_data
    rejecting_strict = TokenSparseClassifier(**rejecting.get_params())
    rejecting_strict.__dict__.update({k: v for k, v in rejecting.__dict__.items() if k.endswith("_")})
    rejecting_strict.unknown_threshold_ = float(np.median(rejecting.rejection_score(X)))
    pred = rejecting_strict.predict(X)
    assert (pred == "oos").any() and (pred != "oos").any()
    for include_backbone in (False, True):
        loaded = TokenSparseClassifier.load(rejecting_strict.save(tmp_path / f"m{include_backbone}.safetensors",
                                                                  include_backbone=include_backbone))
        assert loaded.unknown_threshold_ == rejecting_strict.unknown_threshold_ and loaded.unknown_label == "oos"
        np.testing.assert_allclose(loaded.rejection_score(X), rejecting_strict.rejection_score(X), rtol=0, atol=1e-6)
        assert list(loaded.predict(X)) == list(pred)
    assert [e["prediction"] for e in loaded.explain(X)] == list(pred)
    assert list(pickle.loads(pickle.dumps(rejecting_strict)).predict(X)) == list(pred)
    folder = rejecting_strict.to_huggingface(tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text())
    assert config["sksparseft"]["unknown_label"] == "oos"
    assert config["sksparseft"]["unknown_threshold"] == rejecting_strict.unknown_threshold_
    assert config["sksparseft"]["rejection_score"] == "frozen_probe" and (folder / "rejector" / "head.safetensors").is_file()
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
            "--set", "contrastive_epochs=0", "--set", "random_state=0",
            "--set", "unknown_label=oos", "--set", "unknown_threshold=0.9"]
    assert main(args) == EXIT_OK
    out = tmp_path / "report.json"
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--output", str(out), "--quiet"]) == EXIT_OK
    report = json.loads(out.read_text())
    assert 0.0 <= report["rejected"] <= 1.0 and "unknown_recall" in report and "in_scope_accuracy" in report


@NEEDS_ONNX
def test_onnx_export_carries_the_unknown_label_threshold_and_rejection_score(rejecting, toy_data, tmp_path):
    X, _ = toy_data
    meta, (proba, score) = run_onnx(rejecting.to_onnx(tmp_path / "m.onnx"), rejecting, X[:6])
    assert meta["unknown_label"] == "oos" and meta["unknown_threshold"] == rejecting.unknown_threshold_
    assert meta["classes"] == [str(c) for c in rejecting.classes_] and not meta["multilabel"]
    assert meta["rejection_score"] == "frozen_probe"
    np.testing.assert_allclose(proba, rejecting.predict_proba(X[:6]), atol=1e-4)
    np.testing.assert_allclose(score, rejecting.rejection_score(X[:6]), atol=1e-4)


@pytest.fixture(scope="module")
def wide_model(tiny_model, tmp_path_factory):
    """A 2-layer BERT 128 wide (the tiny one is 32): its linear probe on 15 texts per class over-fits them."""
    import shutil

    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("wide-bert")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=256, max_position_embeddings=128)).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(f"{tiny_model}/{name}", folder / name)
    return str(folder)


def test_auto_threshold_accepts_about_95_percent_of_in_scope_texts_the_fit_never_saw(wide_model):
    """``unknown_threshold="auto"`` accepts about 95% of new in-scope texts: texts of the fit's intents it never saw.

    Data: 30 BANKING77 intents with at least 75 training texts, 75 drawn per intent; per intent 15 train
    the fit (n = 450 calibration texts), 60 are held out (m = 1800): the same draw, so held-out and
    training texts are exchangeable. Tolerance, computed: the threshold is the k-th smallest of n
    out-of-fold scores, k = floor(0.05 (n + 1)) = 22, so the share of new texts it accepts is
    Beta(n + 1 - k, k) (mean 0.951, sd 0.010), and the number accepted of m is Beta-binomial(m, n + 1 - k,
    k) (sd 0.011 as a share): the test takes its central 1 - 2e-4 range, 0.899 to 0.984. The final probe is
    fitted on every text, not on four folds of five (cross-conformal, an approximation), and still accepts
    inside the range. Calibrated in sample instead (scores of the probe fitted on every text, which has
    seen them), the threshold is higher and accepts too few held-out texts (the mutation check below).

    Mutation check: ``fit_rejector`` calibrating on in-sample scores of the probe fitted on all texts -> fails.
    """
    from scipy.stats import betabinom

    from sksparseft.datasets import load_banking77
    from sksparseft.fit.rejection import UNKNOWN_ACCEPTED, conformal_threshold

    n_train, n_held = 15, 60
    data = load_banking77()
    counts = {c: int((data.target == c).sum()) for c in data.target_names}
    intents = [c for c in data.target_names if counts[c] >= n_train + n_held][:30]
    texts, labels = load_banking77(classes=intents, n_per_class=n_train + n_held, random_state=0, return_X_y=True)
    first = np.arange(len(texts)) % (n_train + n_held) < n_train  # drawn per intent: its first 15 train
    X = [t for t, keep in zip(texts, first) if keep]
    held = [t for t, keep in zip(texts, first) if not keep]
    assert len(set(X) & set(held)) == 0
    # The rejector is the frozen backbone's probe: no epoch changes what it scores, so none runs.
    clf = TokenSparseClassifier(wide_model, unknown_label="oos", unknown_threshold="auto", max_epochs=0,
                                contrastive_epochs=0, batch_size=32, device="cpu", random_state=0).fit(X, labels[first])
    accepted = float((clf.rejection_score(held) >= clf.unknown_threshold_).mean())

    n, m = len(X), len(held)
    k = int(np.floor(round((1 - UNKNOWN_ACCEPTED) * (n + 1), 9)))
    assert (n, m, k) == (450, 1800, 22) and conformal_threshold(np.arange(n)) == k - 1  # the rule as computed
    low, high = (betabinom.ppf(q, m, n + 1 - k, k) / m for q in (1e-4, 1 - 1e-4))
    assert low <= accepted <= high, f"accepted {accepted:.4f} of held-out in-scope texts, expected {low:.3f}-{high:.3f}"


def test_conformal_threshold_accepts_the_target_share_of_new_scores():
    from sksparseft.fit.rejection import UNKNOWN_ACCEPTED, conformal_threshold

    rng = np.random.default_rng(0)
    calibration = rng.beta(5, 1, size=2000)
    thr = conformal_threshold(calibration)
    assert UNKNOWN_ACCEPTED <= (calibration >= thr).mean() <= UNKNOWN_ACCEPTED + 0.002
    fresh = rng.beta(5, 1, size=20000)  # exchangeable with the calibration scores
    assert abs((fresh >= thr).mean() - UNKNOWN_ACCEPTED) < 0.015
    assert conformal_threshold(calibration[:10]) == 0.0  # too few to reject any at 95%


def test_out_of_fold_scores_never_score_a_text_with_a_probe_fitted_on_it():
    from sksparseft.fit.rejection import out_of_fold_scores
    from sksparseft.fit.training import fit_linear_probe

    # Random labels on more dimensions than texts: a probe fitted on a text memorises it (confident),
    # a probe that never saw it can only guess (near 1/3).
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    features = rng.normal(size=(60, 200)).astype(np.float32) * 3
    oof = out_of_fold_scores(features, y, 3, seed=0)
    head = torch.nn.Linear(200, 3)
    fit_linear_probe(head, features, y)
    with torch.no_grad():
        in_sample = torch.softmax(head(torch.as_tensor(features)), 1).max(1).values.numpy()
    assert oof.shape == (60,) and ((oof > 0) & (oof <= 1)).all()
    assert np.median(in_sample) > 0.6 and np.median(oof) < np.median(in_sample) - 0.2
