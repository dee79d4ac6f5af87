"""What files and pickles of earlier versions mean where they lack a field (io/older_files.py)."""

import copy
import inspect

import numpy as np
import pytest

from sksparseft import TokenSparseClassifier
from sksparseft.io import fitted as fitted_module
from sksparseft.io.fitted import fitted_from_json, labels_to_json
from sksparseft.io.older_files import FITTED, PARAMS, with_older_params

# What a file lacking the field loads as: the decoded form of older_files.FITTED's value
# (no added tokens is an empty list, no interpolation points an empty dict).
EXPECTED = {
    "added_tokens_": [],
    "interpolation_scores_": {},
    "fit_stages_": {},
    "finetune_plan_": {"regime": "every epoch", "epochs": None, "steps_per_epoch": None, "max_steps": None},
    "multilabel_": False,
    "label_names_": None,
    "thresholds_": None,
    "unknown_threshold_": None,
}


def _oldest_json(finetuned=True):
    """The fitted JSON of a file written before any of older_files.FITTED's fields existed."""
    return {
        "classes": labels_to_json(["card", "pin"]), "token_groups": [], "strategy": {"strategy": "random"},
        "mask_summary": {"selected": 1, "total": 10}, "n_trainable_params": 1, "learning_rate": 0.001,
        "history": [], "pooling": "mean", "interrupted": False, "finetuned": finetuned, "fit_time": 1.5,
    }


def _full_json():
    """The same file with every field a later version writes."""
    added = [{"text": "overdraft", "token_id": 30522, "pieces": [1, 2], "count": 3}]
    return dict(_oldest_json(), added_tokens=added, interpolation=0.5, interpolation_scores=[[0.5, 0.9, 0.3]],
                fit_stages={"training": 1.0}, multilabel=True,
                finetune_plan={"regime": "step budget", "epochs": 2, "steps_per_epoch": 282, "max_steps": 600}, label_names=["a", "b"], thresholds=[0.5, 0.5],
                unknown_threshold=0.3)


# -- parameters ------------------------------------------------------------------------
def test_every_params_key_is_a_parameter_of_the_estimator():
    params = inspect.signature(TokenSparseClassifier).parameters
    assert set(PARAMS) - set(params) == set()
    assert set(PARAMS) <= set(TokenSparseClassifier().get_params())


def test_with_older_params_fills_each_missing_parameter():
    assert with_older_params({}) == PARAMS
    for key in PARAMS:
        given = {k: v for k, v in PARAMS.items() if k != key}
        assert with_older_params(given)[key] == PARAMS[key], key


@pytest.mark.parametrize("key", sorted(PARAMS))
def test_with_older_params_never_overrides_a_given_value(key):
    # None, a falsy value, and a value other than the default: the file's own value always stands.
    for value in (None, 0, False, "file's own", 0.75):
        params = {"model": "m", key: value}
        before = dict(params)
        out = with_older_params(params)
        assert out[key] is value and out["model"] == "m"
        assert set(out) == set(PARAMS) | {"model"}
        assert params == before  # the file's dict is left as it was


def test_with_older_params_does_not_change_params():
    before = copy.deepcopy(PARAMS)
    out = with_older_params({})
    out["contrastive_epochs"] = 99
    assert PARAMS == before


# -- fitted attributes -------------------------------------------------------------------
def test_every_fitted_key_is_a_fitted_attribute_stored_in_the_json():
    assert set(FITTED) <= set(fitted_module.FITTED)
    # A default only applies to a field the JSON holds (one the file may lack).
    assert set(FITTED) <= set(fitted_module._CODEC)
    assert set(EXPECTED) | {"interpolation_"} == set(FITTED)  # this file's table covers every default


def test_the_oldest_file_gets_every_default():
    back = fitted_from_json(_oldest_json(finetuned=True))
    for attr, value in EXPECTED.items():
        assert back[attr] == value and type(back[attr]) is type(value), attr
    # Before interpolation existed a model was the finetune (1) or the probe (0).
    assert back["interpolation_"] == 1.0
    assert fitted_from_json(_oldest_json(finetuned=False))["interpolation_"] == 0.0


@pytest.mark.parametrize("attr", sorted(FITTED))
def test_each_field_missing_alone_gets_its_default_and_leaves_the_others(attr):
    full = _full_json()
    stored = fitted_from_json(full)
    obj = dict(full)
    del obj[attr[:-1]]  # the JSON key is the attribute without its trailing underscore
    back = fitted_from_json(obj)
    expected = {"interpolation_": 1.0}.get(attr, EXPECTED.get(attr))
    assert back[attr] == expected
    with pytest.raises(AssertionError):  # the full file holds another value: the default did apply
        np.testing.assert_equal(back[attr], stored[attr])
    np.testing.assert_equal({k: v for k, v in back.items() if k != attr},
                            {k: v for k, v in stored.items() if k != attr})


def test_two_loads_do_not_share_a_mutable_default():
    before = copy.deepcopy({k: v for k, v in FITTED.items() if not callable(v)})
    first, second = fitted_from_json(_oldest_json()), fitted_from_json(_oldest_json())
    for attr, default in FITTED.items():
        if isinstance(default, (dict, list, set)):
            assert first[attr] is not second[attr] and first[attr] is not default, attr
    first["fit_stages_"]["training"] = 3.0
    first["interpolation_scores_"][0.5] = (0.9, 0.3)
    assert second["fit_stages_"] == {} and second["interpolation_scores_"] == {}
    assert fitted_from_json(_oldest_json())["fit_stages_"] == {}
    assert {k: v for k, v in FITTED.items() if not callable(v)} == before

