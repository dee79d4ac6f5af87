"""Behaviour pinned across refactors: the same fits give the same predictions, old files still load.

The references in tests/data were made by tests/data/make_reference.py with the code before
the fit was split into stages. On the CPU they reproduce exactly; the tolerance only absorbs
another processor's float rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reference_cases import CASES, LEGACY, QUERIES, make_tiny_bert, toy_texts
from sksparseft import TokenSparseClassifier

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def reference_backbone(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("reference-bert"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_fit_predicts_as_the_reference(case, reference_backbone):
    expected = np.load(DATA / "reference.npz")[case]
    X, y = toy_texts()
    clf = TokenSparseClassifier(reference_backbone, **CASES[case]).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(QUERIES), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_model_files_of_the_current_format_still_load(name):
    expected = np.asarray(json.loads((DATA / "legacy_predictions.json").read_text())[name])
    clf = TokenSparseClassifier.load(DATA / f"legacy_{name}.safetensors", device="cpu")
    np.testing.assert_allclose(clf.predict_proba(QUERIES), expected, rtol=0, atol=1e-6)
    assert list(clf.classes_) == ["card", "pin", "refund"]
