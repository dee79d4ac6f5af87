"""Behaviour pinned across refactors: the same fits give the same predictions, old files still load.

The references in tests/data were made by tests/data/make_reference.py. Every pinned case
trains well away from its frozen probe (a test checks it), so a pin sees a change in training,
not only in the floor. A fit on another CPU or with other releases of the dependencies
differs in float rounding, and training carries that noise further in some fits than in others,
so the pins compare labels exactly and each case's probabilities within a tolerance of its own.
Both sides of it were measured per case, not guessed (tests/data/measure_tolerance.py, rows in
tests/data/tolerance_rows.json): the noise, torch's kernels for another instruction set (AVX2,
or the plain scalar ones) or one thread instead of two; and a real change of what the fit
learns, the learning rate 5% up or down. Each case's real change must be at least ``MARGIN``
times its noise, and its tolerance is their geometric mean. The noise side is also measured
again here, on the default case, on the machine the suite runs on. Bit for bit holds only
within one machine and process: a fit repeated in the same process must give the very same
numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from reference_cases import CASES, DEFAULT_BF16, LEGACY, QUERIES, TRAINED_QUERIES, make_tiny_bert, trained_texts
from sksparseft import TokenSparseClassifier

DATA = Path(__file__).parent / "data"
#: How many times its largest measured noise a case's smallest real change must be.
MARGIN = 5.0
NOISE = ("avx2", "default_isa", "threads1")
REAL = ("lr_x1.05", "lr_x0.95")
ROWS = {r["case"]: r for r in json.loads((DATA / "tolerance_rows.json").read_text())}


def _tolerance(case):
    """The geometric mean of the case's largest measured noise and its smallest real change."""
    row = ROWS[case]
    return float(np.sqrt(max(row[k] for k in NOISE) * min(row[k] for k in REAL)))

#: Saved files predict without training: only inference's float noise, which training cannot carry further.
LEGACY_ATOL = 5e-4


@pytest.fixture(scope="module")
def reference_backbone(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("reference-bert"))


@lru_cache(maxsize=None)
def _fitted(backbone, case, **changes):
    X, y = trained_texts()
    return TokenSparseClassifier(backbone, **{**CASES[case], **changes}).fit(X, y)


def _assert_same_predictions(proba, expected, atol):
    np.testing.assert_array_equal(proba.argmax(axis=1), expected.argmax(axis=1))
    np.testing.assert_allclose(proba, expected, rtol=0, atol=atol)


@pytest.mark.parametrize("case", sorted(CASES))
def test_fit_predicts_as_the_reference(case, reference_backbone):
    expected = np.load(DATA / "reference.npz")[case]
    _assert_same_predictions(_fitted(reference_backbone, case).predict_proba(TRAINED_QUERIES), expected, _tolerance(case))


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_pinned_fit_ends_away_from_its_frozen_probe(case, reference_backbone):
    """A pin of a fit that fell back would hold the floor only (mutation check: a case at learning_rate=1e-9 fails)."""
    clf = _fitted(reference_backbone, case)
    probe = _fitted(reference_backbone, case, max_epochs=0, contrastive_epochs=0)
    assert clf.finetuned_ is True
    moved = np.abs(clf.predict_proba(TRAINED_QUERIES) - probe.predict_proba(TRAINED_QUERIES)).max()
    assert moved > 2 * _tolerance(case)  # the probe lies outside the pin's band by its width again


def test_today_s_default_is_pinned():
    defaults = TokenSparseClassifier().get_params()
    assert {k: v for k, v in CASES["default"].items() if k in defaults and defaults[k] != v} == {
        "device": "cpu", "random_state": 0, "precision": "float32"}
    assert {k: v for k, v in DEFAULT_BF16.items() if k in defaults and defaults[k] != v} == {
        "device": "cpu", "random_state": 0, "precision": "bfloat16"}


@pytest.mark.parametrize("case", ["default", "default_bf16", "contrastive"])
def test_a_fit_repeated_in_one_process_is_bit_for_bit(case, reference_backbone):
    """In bf16 too: the default where "auto" picks bf16, which no cross-machine pin can hold (reference_cases.py)."""
    X, y = trained_texts()
    params = DEFAULT_BF16 if case == "default_bf16" else CASES[case]
    a = TokenSparseClassifier(reference_backbone, **params).fit(X, y)
    b = TokenSparseClassifier(reference_backbone, **params).fit(X, y)
    assert a.finetuned_ is True
    np.testing.assert_array_equal(a.predict_proba(TRAINED_QUERIES), b.predict_proba(TRAINED_QUERIES))


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_committed_rows_keep_a_real_change_well_above_the_noise(case):
    row = ROWS[case]  # measured on every case pinned here
    noise, real = max(row[k] for k in NOISE), min(row[k] for k in REAL)
    assert real >= MARGIN * noise
    assert all(row[f"{k}_labels_same"] for k in NOISE)  # the noise never moved a label
    assert row["pinned"] < _tolerance(case)  # the pins themselves were remade with the code measured


_CHILD = """
import json, sys
import torch
sys.path.insert(0, sys.argv[1])
if sys.argv[4] == "1":
    torch.set_num_threads(1)
from reference_cases import CASES, TRAINED_QUERIES, trained_texts
from sksparseft import TokenSparseClassifier
X, y = trained_texts()
clf = TokenSparseClassifier(sys.argv[2], **CASES[sys.argv[3]]).fit(X, y)
print(json.dumps(clf.predict_proba(TRAINED_QUERIES).tolist()))
"""


@pytest.mark.parametrize("variant", ["default_isa", "threads1"])
def test_float_noise_measured_here_stays_below_the_tolerance(variant, reference_backbone):
    """The noise side of the tolerance, measured on this machine: the default case fitted in a fresh process
    with torch's kernels for the plainest instruction set, or on one thread, against this process's fit.

    Mutation check: the default case's tolerance set to 1e-9 -> fails.
    """
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    if variant == "default_isa":
        env["ATEN_CPU_CAPABILITY"] = "default"
    out = subprocess.run([sys.executable, "-c", _CHILD, str(Path(__file__).parent), reference_backbone, "default",
                          "1" if variant == "threads1" else "0"], capture_output=True, text=True, env=env, check=True)
    other = np.asarray(json.loads(out.stdout.strip().splitlines()[-1]))
    here = _fitted(reference_backbone, "default").predict_proba(TRAINED_QUERIES)
    _assert_same_predictions(other, here, _tolerance("default"))


def test_a_real_change_of_the_default_fit_moves_it_past_the_tolerance(reference_backbone):
    """The other side, measured here: the learning rate 5% up moves the default fit past ``MARGIN`` x its tolerance."""
    base = _fitted(reference_backbone, "default")
    changed = _fitted(reference_backbone, "default", learning_rate=1.05 * base.learning_rate_)
    moved = np.abs(changed.predict_proba(TRAINED_QUERIES) - base.predict_proba(TRAINED_QUERIES)).max()
    assert moved > MARGIN * _tolerance("default")


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_model_files_of_the_current_format_still_load(name):
    expected = np.asarray(json.loads((DATA / "legacy_predictions.json").read_text())[name])
    clf = TokenSparseClassifier.load(DATA / f"legacy_{name}.safetensors", device="cpu")
    _assert_same_predictions(clf.predict_proba(QUERIES), expected, LEGACY_ATOL)
    assert list(clf.classes_) == ["card", "pin", "refund"]
