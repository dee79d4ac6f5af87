"""Pickling a fitted estimator (io/pickling.py): modules travel as torch.save bytes and come back
on a device that exists here."""

import pickle
import warnings

import numpy as np
import pytest
import torch

from cases import FAST
from sksparseft import TokenSparseClassifier
from sksparseft.io.older_files import PARAMS
from sksparseft.io.pickling import MODULES, module_state_to_bytes, restore_modules


@pytest.fixture(scope="module")
def fitted(tiny_model, toy_data):
    X, y = toy_data
    return TokenSparseClassifier(tiny_model, **dict(FAST, random_state=0, max_epochs=1, contrastive_epochs=0)).fit(X, y)


def _blank():
    return TokenSparseClassifier.__new__(TokenSparseClassifier)


def test_a_pickled_model_predicts_exactly_as_the_original(fitted, toy_data):
    X, _ = toy_data
    loaded = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    assert loaded.get_params() == fitted.get_params()
    assert isinstance(loaded.module_, torch.nn.Module) and not loaded.module_.training
    assert loaded.device_ == torch.device("cpu") and loaded.rejector_ is None
    assert loaded.module_ is not fitted.module_


def test_the_pickled_state_holds_module_bytes_and_the_device_as_text(fitted):
    state = fitted.__getstate__()
    assert "module_" not in state and isinstance(state["_module_bytes"], bytes)
    assert state["rejector_"] is None and "_rejector_bytes" not in state  # no rejector: nothing to store
    assert state["device_"] == "cpu" and type(state["device_"]) is str
    assert not [k for k, v in state.items() if isinstance(v, torch.nn.Module)]
    # The estimator itself keeps its module and device.
    assert isinstance(fitted.module_, torch.nn.Module) and isinstance(fitted.device_, torch.device)
    pickle.dumps(fitted)
    assert isinstance(fitted.module_, torch.nn.Module) and isinstance(fitted.device_, torch.device)


def test_an_unfitted_estimator_pickles_as_its_parameters(tiny_model):
    est = TokenSparseClassifier(tiny_model, max_epochs=3)
    state = est.__getstate__()
    assert not [k for k in state if k.endswith("bytes")] and "device_" not in state
    loaded = pickle.loads(pickle.dumps(est))
    assert loaded.get_params() == est.get_params() and not hasattr(loaded, "module_")


def test_a_pickle_from_before_the_rejector_loads_without_one(fitted, toy_data):
    X, _ = toy_data
    state = fitted.__getstate__()
    del state["rejector_"]  # as pickled before 0.6.0
    est = _blank()
    restore_modules(est, state)
    assert est.rejector_ is None
    np.testing.assert_array_equal(est.predict_proba(X), fitted.predict_proba(X))


@pytest.mark.parametrize("param", sorted(PARAMS))
def test_a_pickle_from_before_a_parameter_gets_what_it_was_fitted_with(fitted, toy_data, param):
    X, _ = toy_data
    state = fitted.__getstate__()
    del state[param]  # as pickled before the parameter existed
    est = _blank()
    restore_modules(est, state)
    assert est.get_params()[param] == PARAMS[param]  # and get_params, clone, refit work
    np.testing.assert_array_equal(est.predict_proba(X), fitted.predict_proba(X))


def test_both_modules_travel_as_bytes_and_come_back_in_eval_mode():
    torch.manual_seed(0)
    module, rejector = torch.nn.Linear(4, 3), torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Dropout(0.5))
    state = module_state_to_bytes({"module_": module.train(), "rejector_": rejector.train(),
                                   "device_": torch.device("cpu"), "classes_": [1, 2, 3]})
    assert set(state) == {"_module_bytes", "_rejector_bytes", "device_", "classes_"}
    holder = _blank()
    restore_modules(holder, pickle.loads(pickle.dumps(state)))
    assert set(MODULES) <= set(vars(holder)) and holder.classes_ == [1, 2, 3]
    for name, original in (("module_", module), ("rejector_", rejector)):
        back = getattr(holder, name)
        assert type(back) is type(original) and not back.training
        for a, b in zip(back.state_dict().values(), original.state_dict().values()):
            assert torch.equal(a, b)


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_a_cuda_model_loads_on_the_cpu_with_a_warning_where_there_is_no_cuda(fitted, toy_data, monkeypatch, device):
    X, _ = toy_data
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    state = fitted.__getstate__()
    state["device_"] = device
    est = _blank()
    with pytest.warns(UserWarning, match="fitted on CUDA, which is not available here; loading it on the CPU"):
        restore_modules(est, state)
    assert est.device_ == torch.device("cpu")
    assert {p.device.type for p in est.module_.parameters()} == {"cpu"}
    np.testing.assert_array_equal(est.predict_proba(X), fitted.predict_proba(X))


def test_a_cpu_model_loads_without_the_cuda_warning(fitted):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = pickle.loads(pickle.dumps(fitted))
    assert not [w for w in caught if "CUDA" in str(w.message)]
    assert loaded.device_ == torch.device("cpu")
