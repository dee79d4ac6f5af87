"""The fitted attributes (io/fitted.py): one list, assigned at once, and their JSON codec."""

import copy
import re
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sksparseft.io.fitted import (
    FITTED, fitted_from_json, fitted_to_json, json_default, labels_from_json, labels_to_json, set_fitted,
)
from sksparseft.text.tokens import TokenGroup
from sksparseft.text.vocabulary import AddedToken

# Fitted attributes a model file stores outside the JSON (tensors, tokenizer files) or rebuilds on load.
NOT_JSON = {"mask_", "module_", "tokenizer_", "device_", "rejector_"}


def _roundtrip(obj):
    return json.loads(json.dumps(obj, default=json_default))


def test_fitted_lists_each_attribute_once_and_the_json_holds_all_but_the_rebuilt_ones():
    assert len(FITTED) == len(set(FITTED)) and all(name.endswith("_") for name in FITTED)
    assert NOT_JSON <= set(FITTED)
    est = _fitted_values()
    assert set(fitted_from_json(_roundtrip(fitted_to_json(SimpleNamespace(**est))))) == set(FITTED) - NOT_JSON


def test_set_fitted_assigns_every_attribute_and_returns_the_estimator():
    est = SimpleNamespace()
    values = {name: object() for name in FITTED}
    assert set_fitted(est, **values) is est
    assert all(getattr(est, name) is values[name] for name in FITTED)


@pytest.mark.parametrize("change, named", [
    (lambda v: v.pop("rejector_"), "missing ['rejector_']"),
    (lambda v: v.update(extra_=1), "unknown ['extra_']"),
])
def test_set_fitted_with_a_missing_or_unknown_attribute_raises_and_assigns_nothing(change, named):
    est = SimpleNamespace(classes_="before")
    values = {name: 1 for name in FITTED}
    change(values)
    with pytest.raises(TypeError, match=re.escape(named)):
        set_fitted(est, **values)
    assert vars(est) == {"classes_": "before"}


def test_json_default_converts_numpy_paths_and_tuples():
    assert json_default(np.int64(3)) == 3 and type(json_default(np.int64(3))) is int
    assert type(json_default(np.float32(0.5))) is float and type(json_default(np.bool_(True))) is bool
    assert json_default(np.arange(3).reshape(1, 3)) == [[0, 1, 2]]
    assert json_default(Path("a") / "b") == str(Path("a") / "b")
    assert json_default((1, 2)) == [1, 2]
    with pytest.raises(TypeError, match="set cannot be saved as JSON"):
        json_default({1})


@pytest.mark.parametrize("labels", [
    np.array(["card", "pin", "refund"], dtype=object),
    np.array(["card", "pin"]),  # fixed-width unicode
    np.array([3, 7, 11], dtype=np.int64),
    np.array([-1, 2], dtype=np.int32),
    np.array([0, 255], dtype=np.uint8),
    np.array([0.5, 2.0]),
    np.array([False, True]),
    np.array([1, "a"], dtype=object),  # mixed, as object
], ids=["object-str", "unicode", "int64", "int32", "uint8", "float64", "bool", "object-mixed"])
def test_labels_round_trip_with_their_dtype(labels):
    back = labels_from_json(_roundtrip(labels_to_json(labels)))
    assert back.dtype == labels.dtype
    assert back.tolist() == labels.tolist()
    assert [type(v) for v in back.tolist()] == [type(v) for v in labels.tolist()]


def test_labels_that_json_cannot_hold_are_refused():
    labels = np.empty(2, dtype=object)
    labels[:] = [(1, 2), (3, 4)]
    with pytest.raises(TypeError, match="class labels of type tuple cannot be saved safely"):
        labels_to_json(labels)


def _fitted_values(classes=None, **overrides):
    classes = np.array([3, 7, 9], dtype=np.int32) if classes is None else classes
    values = dict(
        classes_=classes,
        token_groups_=[TokenGroup("card", (2123,), 0.75, classes[1], 4),
                       TokenGroup("overdraft", (30522,), 0.5, classes[0], 2, pieces=(2058, 7265, 6199))],
        added_tokens_=[AddedToken("overdraft", 30522, (2058, 7265, 6199), 2)],
        strategy_={"strategy": "token_sparse", "density": 0.01},
        mask_summary_={"selected": 10, "total": 1000, "density": 0.01},
        n_trainable_params_=np.int64(10),
        learning_rate_=np.float32(0.001),
        finetune_plan_={"regime": "step budget", "epochs": 2, "steps_per_epoch": 282, "max_steps": 600},
        history_=[{"epoch": 1, "train_loss": 0.9}, {"epoch": 2, "train_loss": 0.5}],
        pooling_="mean",
        interrupted_=np.bool_(False),
        finetuned_=True,
        interpolation_=0.5,
        interpolation_scores_={0.0: (0.8, 0.55), 0.5: (0.9, 0.4), 1.0: (0.85, 0.45)},
        fit_time_=12.5,
        fit_stages_={"load": 0.1, "training": 10.0},
        multilabel_=False,
        label_names_=None,
        thresholds_=None,
        unknown_threshold_=None,
    )
    values.update(overrides)
    return values


def _decoded(values):
    return fitted_from_json(_roundtrip(fitted_to_json(SimpleNamespace(**values))))


def test_fitted_round_trip_keeps_values_and_types():
    values = _fitted_values()
    back = _decoded(values)
    np.testing.assert_array_equal(back["classes_"], values["classes_"])
    assert back["classes_"].dtype == np.int32
    assert back["token_groups_"] == values["token_groups_"]
    for g in back["token_groups_"]:
        assert type(g.token_ids) is tuple and type(g.pieces) is tuple
        assert type(g.label) is np.int32  # the class object itself, not a plain int
    assert back["added_tokens_"] == values["added_tokens_"]
    assert back["interpolation_scores_"] == values["interpolation_scores_"]
    assert all(type(s) is tuple for s in back["interpolation_scores_"].values())
    assert type(back["n_trainable_params_"]) is int and back["n_trainable_params_"] == 10
    assert type(back["learning_rate_"]) is float and back["learning_rate_"] == pytest.approx(0.001)
    assert back["interrupted_"] is False and back["finetuned_"] is True
    for key in ("strategy_", "mask_summary_", "history_", "pooling_", "interpolation_", "fit_time_",
                "fit_stages_", "multilabel_", "label_names_", "thresholds_", "unknown_threshold_"):
        assert back[key] == values[key], key


def test_string_labels_and_set_optional_values_round_trip():
    classes = np.array(["card", "pin", "unknown"], dtype=object)
    values = _fitted_values(classes, multilabel_=False, label_names_=["a", "b"],
                            thresholds_=np.array([0.25, 0.5, 0.75], dtype=np.float32),
                            unknown_threshold_=np.float64(0.42), added_tokens_=[])
    back = _decoded(values)
    assert back["classes_"].dtype == object and back["classes_"].tolist() == ["card", "pin", "unknown"]
    assert [g.label for g in back["token_groups_"]] == ["pin", "card"]
    assert isinstance(back["thresholds_"], np.ndarray)
    np.testing.assert_allclose(back["thresholds_"], [0.25, 0.5, 0.75])
    assert back["unknown_threshold_"] == pytest.approx(0.42) and type(back["unknown_threshold_"]) is float
    assert back["label_names_"] == ["a", "b"] and back["added_tokens_"] == []


def test_files_written_before_an_attribute_existed_get_its_default():
    obj = _roundtrip(fitted_to_json(SimpleNamespace(**_fitted_values())))
    for key in ("added_tokens", "interpolation", "interpolation_scores", "fit_stages", "multilabel",
                "label_names", "thresholds", "unknown_threshold"):
        del obj[key]
    back = fitted_from_json(obj)
    assert back["added_tokens_"] == [] and back["interpolation_scores_"] == {} and back["fit_stages_"] == {}
    assert back["multilabel_"] is False
    assert back["label_names_"] is None and back["thresholds_"] is None and back["unknown_threshold_"] is None
    assert back["interpolation_"] == 1.0  # a finetune
    obj["finetuned"] = False
    assert fitted_from_json(obj)["interpolation_"] == 0.0  # the probe


@pytest.mark.parametrize("key", ["classes", "token_groups", "strategy", "history", "pooling", "fit_time", "finetuned"])
def test_a_missing_required_field_is_a_key_error_naming_it(key):
    obj = _roundtrip(fitted_to_json(SimpleNamespace(**_fitted_values())))
    del obj[key]
    with pytest.raises(KeyError) as info:
        fitted_from_json(obj)
    assert info.value.args == (key,)


@pytest.mark.parametrize("key, value", [
    ("n_trainable_params", 1.5), ("n_trainable_params", "10"), ("n_trainable_params", True),
    ("learning_rate", "0.001"), ("learning_rate", None), ("learning_rate", True),
    ("fit_time", [1.0]), ("interpolation", "half"),
    ("interrupted", 0), ("finetuned", "yes"), ("multilabel", None),
])
def test_a_scalar_field_of_the_wrong_json_type_is_a_type_error(key, value):
    obj = _roundtrip(fitted_to_json(SimpleNamespace(**_fitted_values())))
    obj[key] = value
    with pytest.raises(TypeError, match=f"the fitted field '{key}' holds"):
        fitted_from_json(obj)


def test_an_integer_where_a_float_is_stored_is_accepted():
    obj = _roundtrip(fitted_to_json(SimpleNamespace(**_fitted_values())))
    obj["learning_rate"], obj["fit_time"], obj["interpolation"] = 1, 3, 0
    back = fitted_from_json(obj)
    assert back["learning_rate_"] == 1 and back["fit_time_"] == 3 and back["interpolation_"] == 0


def test_decoding_does_not_change_the_json_object():
    obj = _roundtrip(fitted_to_json(SimpleNamespace(**_fitted_values())))
    before = copy.deepcopy(obj)
    fitted_from_json(obj)
    assert obj == before
