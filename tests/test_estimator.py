import io
import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from skorch.callbacks import Callback

from cases import FAST
from sksparseft import TokenGroup, TokenSparseClassifier


@pytest.fixture(scope="module")
def fitted(tiny_model, toy_data):
    X, y = toy_data
    return TokenSparseClassifier(tiny_model, random_state=0, **FAST).fit(X, y)


def _lower(texts):
    return [t.lower() for t in texts]


def test_fit_predict_proba_contract(fitted, toy_data):
    X, y = toy_data
    assert list(fitted.classes_) == ["card", "pin", "refund"]
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    pred = fitted.predict(X)
    assert set(pred) <= set(fitted.classes_)
    # columns follow classes_: predict is the argmax of predict_proba
    assert list(pred) == list(fitted.classes_[proba.argmax(axis=1)])
    assert fitted.score(X, y) == np.mean(pred == np.asarray(y))
    assert fitted.score(X, y) > 0.5  # three intents with clear cue words
    assert fitted.decision_function(X[:2]).shape == (2, 3)


def test_fitted_state(fitted):
    assert fitted.token_groups_ and all(isinstance(g, TokenGroup) for g in fitted.token_groups_)
    assert all(g.label in fitted.classes_ for g in fitted.token_groups_)
    assert {g.text for g in fitted.token_groups_[:6]} & {"card", "pin", "refund"}
    s = fitted.mask_summary_
    assert 0 < s["selected"] < s["total"] and s["per_layer"] and s["per_module"]
    assert fitted.n_trainable_params_ == s["selected"] + fitted.module_.head.weight.numel() + 3
    assert fitted.history_[0]["stage"] == "linear_probe"
    assert [r["epoch"] for r in fitted.history_[1:]] == [1, 2]
    assert all("train_loss" in r and "valid_acc" in r for r in fitted.history_[1:])
    assert isinstance(fitted.finetuned_, bool) and fitted.fit_time_ > 0
    assert set(fitted.fit_stages_) == {"load", "token_groups", "linear_probe", "selection", "contrastive", "training",
                                       "interpolation", "head_refit", "finalize"}
    assert abs(sum(fitted.fit_stages_.values()) - fitted.fit_time_) < 0.05 * fitted.fit_time_ + 1e-3


def test_entries_outside_the_mask_are_untouched(tiny_model, toy_data):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_model, random_state=0, validation_fraction=0.0, learning_rate=1e-2, **FAST).fit(X, y)
    base = load_file(f"{tiny_model}/model.safetensors")
    fitted = dict(clf.module_.encoder.named_parameters())
    n_changed = 0
    for name, param in fitted.items():
        dense = clf.mask_.dense(name)
        ref = base[name].float()
        assert torch.equal(param.detach()[~dense], ref[~dense]), name
        n_changed += int((param.detach()[dense] != ref[dense]).sum())
    assert n_changed > 0  # the mask did train


def test_same_seed_same_model_different_seed_different(tiny_model, toy_data):
    X, y = toy_data
    a = TokenSparseClassifier(tiny_model, random_state=3, **FAST).fit(X, y)
    b = TokenSparseClassifier(tiny_model, random_state=3, **FAST).fit(X, y)
    assert [g.token_ids for g in a.token_groups_] == [g.token_ids for g in b.token_groups_]
    assert all(torch.equal(a.mask_.indices[n], b.mask_.indices[n]) for n in a.mask_.indices)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = TokenSparseClassifier(tiny_model, random_state=4, **FAST).fit(X, y)
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))


def test_random_state_none_draws_a_fresh_mask_in_every_fit(tiny_model, toy_data):
    X, y = toy_data
    params = dict(FAST, max_epochs=1, contrastive_epochs=0)
    a = TokenSparseClassifier(tiny_model, **params).fit(X, y)
    b = TokenSparseClassifier(tiny_model, **params).fit(X, y)
    assert a.random_state is None and b.random_state is None
    assert not all(torch.equal(a.mask_.indices[n], b.mask_.indices[n]) for n in a.mask_.indices)


@pytest.mark.parametrize("dump,load", [
    (lambda o: pickle.dumps(o), lambda b: pickle.loads(b)),
    (lambda o: _joblib_bytes(o), lambda b: joblib.load(io.BytesIO(b))),
])
def test_pickle_round_trip_predicts_identically(fitted, toy_data, dump, load):
    X, _ = toy_data
    restored = load(dump(fitted))
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))
    assert restored.device_.type == "cpu"


def _joblib_bytes(obj):
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()


def test_cuda_pickle_loads_on_cpu(fitted, toy_data, monkeypatch):
    # Simulate a model saved on a GPU machine: the stored device says cuda.
    X, _ = toy_data
    state = fitted.__getstate__()
    state["device_"] = "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    clone_ = TokenSparseClassifier.__new__(TokenSparseClassifier)
    with pytest.warns(UserWarning, match="CUDA"):
        clone_.__setstate__(state)
    assert clone_.device_.type == "cpu"
    np.testing.assert_array_equal(clone_.predict(X), fitted.predict(X))


def test_inputs_of_many_shapes(tiny_model, toy_data):
    X, y = toy_data
    label_ids = {"card": 0, "pin": 1, "refund": 2}
    y_int = np.array([label_ids[v] for v in y])
    clf = TokenSparseClassifier(tiny_model, random_state=0, **FAST).fit(pd.Series(X), y_int)
    assert clf.classes_.tolist() == [0, 1, 2]
    assert clf.predict(np.array(X[:4], dtype=object)).dtype.kind == "i"
    assert clf.predict(pd.Series(X[:4])).shape == (4,)
    assert clf.predict(tuple(X[:2])).shape == (2,)
    assert clf.predict([]).shape == (0,)
    assert clf.predict_proba([]).shape == (0, 3)


def test_sklearn_api(tiny_model, toy_data):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_model, **FAST)
    params = clf.get_params()
    assert params["model"] == tiny_model and params["strategy_options"] is None
    clf.set_params(strategy_options={"density": 0.02})
    assert clone(clf).get_params()["strategy_options"] == {"density": 0.02}
    assert not hasattr(clone(clf), "classes_")
    pipe = make_pipeline(FunctionTransformer(_lower), TokenSparseClassifier(tiny_model, random_state=0, **FAST))
    pipe.fit(X, y)
    # The texts are lower case already: the pipeline predicts what the estimator alone does.
    alone = TokenSparseClassifier(tiny_model, random_state=0, **FAST).fit(X, y)
    np.testing.assert_array_equal(pipe.predict_proba(X), alone.predict_proba(X))
    scores = cross_val_score(TokenSparseClassifier(tiny_model, random_state=0, **FAST), X, np.asarray(y), cv=2)
    assert scores.shape == (2,)
    search = GridSearchCV(TokenSparseClassifier(tiny_model, strategy="token_sparse", random_state=0, **FAST),
                          {"strategy_options": [{"density": 0.005}, {"density": 0.02}]}, cv=2)
    search.fit(X, np.asarray(y))
    best = search.best_estimator_
    density = best.strategy_options["density"]
    assert density == search.best_params_["strategy_options"]["density"]
    # The refit model is fitted at the chosen density: its scored entries are that share of the backbone.
    s = best.mask_summary_
    rows = best.mask_.indices["embeddings.word_embeddings.weight"].numel()  # the token groups' rows, on top
    assert s["selected"] - rows == round(density * s["total"])


def test_user_callbacks_run(tiny_model, toy_data):
    X, y = toy_data

    class Counter(Callback):
        def initialize(self):
            self.epochs = 0
            return self

        def on_epoch_end(self, net, **kwargs):
            self.epochs += 1

    counter = Counter()
    clf = TokenSparseClassifier(tiny_model, random_state=0, callbacks=[counter], patience=0, **FAST).fit(X, y)
    assert counter.epochs == 2  # the user's callback saw both epochs
    assert len(clf.history_) == 3  # probe + 2 epochs


def test_user_callbacks_see_the_epoch_early_stopping_ends_on(tiny_model, toy_data):
    X, y = toy_data

    class Ends(Callback):
        def initialize(self):
            self.epochs, self.restored = [], None
            return self

        def on_epoch_end(self, net, **kwargs):
            self.epochs.append(net.history[-1]["epoch"])

        def on_train_end(self, net, **kwargs):
            best = dict(net.callbacks_)["early_stopping"].best_model_weights_
            now = net.module_.state_dict()
            self.restored = all(torch.equal(now[k], v) for k, v in best.items())

    ends = Ends()
    params = dict(max_epochs=12, batch_size=8, device="cpu", validation_fraction=0.25,
                  contrastive_epochs=1, random_state=0, patience=1)
    clf = TokenSparseClassifier(tiny_model, callbacks=[ends], **params).fit(X, y)
    ran = [row["epoch"] for row in clf.history_[1:]]
    assert len(ran) < params["max_epochs"]  # early stopping ended the fit
    assert ends.epochs == ran  # and the user's callback saw the end of every epoch, the last one included
    assert ends.restored  # and, at the end of training, the best epoch's weights restored


def test_predict_before_fit():
    with pytest.raises(NotFittedError):
        TokenSparseClassifier().predict(["hello"])


@pytest.mark.parametrize("param,value,match", [
    ("strategy_options", {"density": 0.0}, "density"),
    ("strategy_options", {"density": 1.5}, "density"),
    ("density", 1.5, "density"),  # the moved parameter is still checked while it is honoured
    ("max_epochs", -1, "max_epochs"),
    ("batch_size", -2, "batch_size"),
    ("pooling", "max", "pooling"),
    ("device", "quantum", "device"),
    ("validation_fraction", 1.0, "validation_fraction"),
    ("head_init", "zeros", "head_init"),
    ("random_state", -1, "random_state"),
    ("learning_rate", float("nan"), "learning_rate"),
    ("class_weight", "auto", "class_weight"),
    ("verbose", -1, "verbose"),
])
def test_bad_parameters_fail_early(tiny_model, toy_data, param, value, match, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the backbone must not be loaded")

    monkeypatch.setattr(TokenSparseClassifier, "stage_load", never)  # early: before anything loads
    X, y = toy_data
    with pytest.raises(ValueError, match=match):
        TokenSparseClassifier(tiny_model, **{**FAST, param: value}).fit(X, y)


def test_bad_model_path(toy_data, tmp_path):
    X, y = toy_data
    with pytest.raises(ValueError, match="model="):
        TokenSparseClassifier(str(tmp_path / "nope"), **FAST).fit(X, y)


@pytest.mark.parametrize("X,y,exc,match", [
    ("just one string", ["a"], TypeError, "single str"),
    (["ok", None], ["a", "b"], ValueError, "missing"),
    (["ok", 3], ["a", "b"], TypeError, "not a str"),
    ([], [], ValueError, "empty"),
    (["a", "b", "c"], ["x", "y"], ValueError, "different lengths"),
    (["a", "b"], ["x", "x"], ValueError, "single class"),
    (["a", "b"], ["x", None], ValueError, "missing"),
    (np.array([["a", "b"], ["c", "d"]]), ["x", "y"], ValueError, "one-dimensional"),
])
def test_bad_input_fails_early(tiny_model, X, y, exc, match):
    with pytest.raises(exc, match=match):
        TokenSparseClassifier(tiny_model, **FAST).fit(X, y)


def test_pickle_loads_in_a_fresh_interpreter(fitted, toy_data, tmp_path):
    import subprocess
    import sys

    X, _ = toy_data
    path = tmp_path / "model.joblib"
    joblib.dump(fitted, path)
    expected = fitted.predict(X)
    code = (
        "import joblib, sys, json; m = joblib.load(sys.argv[1]);"
        "print(json.dumps(list(map(str, m.predict(json.loads(sys.argv[2]))))))"
    )
    import json

    out = subprocess.run([sys.executable, "-c", code, str(path), json.dumps(list(X))], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == list(map(str, expected))


_FIT_IN_A_FRESH_PROCESS = """
import sys
import numpy as np
from sksparseft import TokenSparseClassifier
from sksparseft.datasets import load_banking77
X, y = load_banking77("train", return_X_y=True)
idx = np.random.default_rng(0).permutation(len(X))[:300]
X, y = [X[i] for i in idx], np.asarray(y)[idx]
clf = TokenSparseClassifier(sys.argv[1], random_state=0, max_epochs=1, batch_size=16, 
                            device="cpu", validation_fraction=0.0).fit(X, y)
np.save(sys.argv[2], clf.predict_proba(X[:100]))
"""


def test_same_seed_same_model_in_fresh_processes(tiny_model, tmp_path):
    """Bitwise the same in two processes: per-process state (memory layout, threads) must not leak in."""
    import subprocess
    import sys

    model = tiny_model
    outs = []
    for i in range(2):
        out = tmp_path / f"proba{i}.npy"
        subprocess.run([sys.executable, "-c", _FIT_IN_A_FRESH_PROCESS, model, str(out)], check=True, capture_output=True)
        outs.append(np.load(out))
    np.testing.assert_array_equal(outs[0], outs[1])
