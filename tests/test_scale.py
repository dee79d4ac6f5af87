"""Scale-out: a hyperparameter search whose fits run on a real dask.distributed cluster."""

import importlib.util
import runpy
from pathlib import Path

import numpy as np
import pytest

from sksparseft import TokenSparseClassifier

pytestmark = pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                                reason="needs dask.distributed (pip install 'dask[distributed]')")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "dask_search.py"


def test_gridsearch_runs_on_a_local_dask_cluster(tiny_model, toy_data):
    search_on_dask = runpy.run_path(str(EXAMPLE))["search_on_dask"]  # the example's own code
    X, y = toy_data
    est = TokenSparseClassifier(tiny_model, max_epochs=1, batch_size=8, device="cpu",
                                random_state=0, validation_fraction=0.0)
    search, workers = search_on_dask(est, {"strategy": ["token_sparse", "bitfit"]}, X, np.asarray(y), n_workers=2, cv=2)
    assert workers == 2
    assert set(search.cv_results_["param_strategy"]) == {"token_sparse", "bitfit"}
    assert search.best_estimator_.predict(X[:3]).shape == (3,)
