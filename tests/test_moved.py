"""The mask-only parameters that moved into the strategies' options: the deprecation cycle.

``density`` and ``n_sensitivity_samples`` are options of the mask strategies; the old parameters
warn (FutureWarning) and are honoured until 0.11.0, exactly as the option would be.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sksparseft import TokenSparseClassifier
from sksparseft.fit.moved import MOVED
from sksparseft.io.persistence import params_from_json
from sksparseft.strategies import STRATEGIES, option_names

from cases import FAST

PARAMS = dict(FAST, max_epochs=1, contrastive_epochs=0, random_state=0, validation_fraction=0.0)


@pytest.mark.parametrize("strategy,name,value", [("random", "density", 0.05), ("token_sparse", "density", 0.02),
                                                 ("fisher", "n_sensitivity_samples", 4)])
def test_a_moved_parameter_warns_and_fits_as_the_option_does(tiny_model, toy_data, strategy, name, value):
    X, y = toy_data
    with pytest.warns(FutureWarning, match=rf"the parameter {name} moved into strategy_options.*"
                                           rf"strategy_options=\{{'{name}': {value}\}}"):
        old = TokenSparseClassifier(tiny_model, strategy=strategy, **{name: value}, **PARAMS).fit(X, y)
    new = TokenSparseClassifier(tiny_model, strategy=strategy, strategy_options={name: value}, **PARAMS).fit(X, y)
    default = TokenSparseClassifier(tiny_model, strategy=strategy, **PARAMS).fit(X, y)
    assert old.strategy_[name] == new.strategy_[name] == value
    np.testing.assert_array_equal(old.predict_proba(X), new.predict_proba(X))
    assert old.mask_summary_["selected"] == new.mask_summary_["selected"]
    if name == "density":  # the option does something: the default's mask is another size
        assert default.mask_summary_["selected"] != new.mask_summary_["selected"]


def test_the_options_given_without_the_old_parameters_never_warn(tiny_model, toy_data):
    X, y = toy_data
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        TokenSparseClassifier(tiny_model, strategy_options={"density": 0.02}, **PARAMS).fit(X, y)
    assert [str(w.message) for w in seen if "strategy_options" in str(w.message)] == []


def test_the_number_of_sensitivity_texts_changes_the_mask_and_is_checked(tiny_model, toy_data, monkeypatch):
    X, y = toy_data
    few = TokenSparseClassifier(tiny_model, strategy="fisher", strategy_options={"n_sensitivity_samples": 2},
                                **PARAMS).fit(X, y)
    every = TokenSparseClassifier(tiny_model, strategy="fisher", **PARAMS).fit(X, y)
    assert any(not np.array_equal(few.mask_.indices[n], every.mask_.indices[n]) for n in every.mask_.indices)

    def never(*args, **kwargs):
        raise AssertionError("the backbone must not be loaded")

    monkeypatch.setattr(TokenSparseClassifier, "stage_load", never)
    with pytest.raises(ValueError, match="n_sensitivity_samples must be an integer >= 1"):
        TokenSparseClassifier(tiny_model, strategy="token_sparse", strategy_options={"n_sensitivity_samples": 0},
                              **PARAMS).fit(X, y)


def test_a_moved_parameter_given_twice_is_refused_before_anything_loads(tiny_model, toy_data, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the backbone must not be loaded")

    monkeypatch.setattr(TokenSparseClassifier, "stage_load", never)
    with pytest.raises(ValueError, match="density is given twice"):
        TokenSparseClassifier(tiny_model, density=0.02, strategy_options={"density": 0.05}, **PARAMS).fit(*toy_data)


def test_a_strategy_without_the_option_ignores_the_old_parameter_as_before(tiny_model, toy_data):
    X, y = toy_data
    assert "density" not in option_names("full")
    with pytest.warns(FutureWarning):
        old = TokenSparseClassifier(tiny_model, strategy="full", density=0.5, **PARAMS).fit(X, y)
    new = TokenSparseClassifier(tiny_model, strategy="full", **PARAMS).fit(X, y)
    np.testing.assert_array_equal(old.predict_proba(X), new.predict_proba(X))


def test_the_mask_strategies_hold_the_moved_options_and_the_others_none():
    for name, cls in STRATEGIES.items():
        mask = name in ("random", "random_rows", "token_sparse", "fisher")
        assert ("density" in option_names(name)) == mask, name
        assert ("n_sensitivity_samples" in option_names(name)) == (name in ("token_sparse", "fisher")), name


def test_files_saved_before_the_move_load_with_their_values_as_options_and_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        params = params_from_json({"strategy": "token_sparse", "density": 0.001, "n_sensitivity_samples": 256,
                                   "strategy_options": {"min_layer": 1}})
    # a value other than the option's default moves; the default one is dropped
    assert params["strategy_options"] == {"min_layer": 1, "density": 0.001}
    assert all(params[name] == "deprecated" for name in MOVED)
    assert "strategy_options" not in params_from_json({"strategy": "full", "density": 0.5})


def test_a_model_file_saved_before_the_move_loads_and_refits_without_a_warning(tmp_path, tiny_model, toy_data):
    from pathlib import Path

    legacy = Path(__file__).parent / "data" / "legacy_token_sparse.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        clf = TokenSparseClassifier.load(legacy)
        assert clf.strategy_options["density"] == 0.001 and clf.density == "deprecated"
        assert clf.strategy_["density"] == 0.001  # what the file's model was fitted with
        clf.set_params(model=tiny_model, **PARAMS).fit(*toy_data)
    assert clf.strategy_["density"] == 0.001
