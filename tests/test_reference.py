"""Behaviour pinned across refactors: the same fits give the same predictions, old files still load.

The references in tests/data were made by tests/data/make_reference.py. Every pinned case
trains well away from its frozen probe (a test checks it), so a pin sees a change in training,
not only in the floor. A fit on another CPU or with other releases of the dependencies
differs in float rounding, so the pins compare labels exactly and probabilities within
``ATOL``. Its size was measured, not guessed (tests/data/measure_tolerance.py, rows in
tests/data/tolerance_rows.json): torch's kernels for another instruction set, or one thread
instead of two, against a real change of what a fit learns, the learning rate 5% up or down.
The rows must keep the real change at least ``MARGIN`` times the noise, with ``ATOL`` between;
the noise side is also measured again here, on the default case. Bit for bit holds only
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

from reference_cases import CASES, LEGACY, QUERIES, TRAINED_QUERIES, make_tiny_bert, trained_texts
from sksparseft import TokenSparseClassifier
from sksparseft.model.devices import cpu_has_native_bf16

DATA = Path(__file__).parent / "data"
#: Above the float noise of another machine, below the smallest real change of a fit (see above).
ATOL = 5e-4
#: How many times the largest measured noise the smallest real change must be.
MARGIN = 5.0
#: Pinned with bf16 arithmetic: only a CPU that computes bf16 natively reproduces it.
NATIVE_BF16 = {"default_bf16"}


@pytest.fixture(scope="module")
def reference_backbone(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("reference-bert"))


@lru_cache(maxsize=None)
def _fitted(backbone, case, **changes):
    X, y = trained_texts()
    return TokenSparseClassifier(backbone, **{**CASES[case], **changes}).fit(X, y)


def _needs(case):
    if case in NATIVE_BF16 and not cpu_has_native_bf16():
        pytest.skip(f"{case} is pinned in bf16, which this CPU does not compute natively (no AVX512-BF16 or AMX)")


def _assert_same_predictions(proba, expected):
    np.testing.assert_array_equal(proba.argmax(axis=1), expected.argmax(axis=1))
    np.testing.assert_allclose(proba, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("case", sorted(CASES))
def test_fit_predicts_as_the_reference(case, reference_backbone):
    _needs(case)
    expected = np.load(DATA / "reference.npz")[case]
    _assert_same_predictions(_fitted(reference_backbone, case).predict_proba(TRAINED_QUERIES), expected)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_pinned_fit_ends_away_from_its_frozen_probe(case, reference_backbone):
    """A pin of a fit that fell back would hold the floor only (mutation check: a case at learning_rate=1e-9 fails)."""
    _needs(case)
    clf = _fitted(reference_backbone, case)
    probe = _fitted(reference_backbone, case, max_epochs=0, contrastive_epochs=0)
    assert clf.finetuned_ is True
    moved = np.abs(clf.predict_proba(TRAINED_QUERIES) - probe.predict_proba(TRAINED_QUERIES)).max()
    assert moved > 20 * ATOL


def test_today_s_default_is_pinned():
    defaults = TokenSparseClassifier().get_params()
    pinned = [name for name, params in CASES.items()
              if all(v == defaults[k] for k, v in params.items() if k not in ("device", "random_state", "precision"))]
    assert {CASES[name].get("precision") for name in pinned} >= {"float32", "bfloat16"}  # what "auto" resolves to


@pytest.mark.parametrize("case", ["default", "contrastive"])
def test_a_fit_repeated_in_one_process_is_bit_for_bit(case, reference_backbone):
    X, y = trained_texts()
    a = TokenSparseClassifier(reference_backbone, **CASES[case]).fit(X, y).predict_proba(TRAINED_QUERIES)
    b = TokenSparseClassifier(reference_backbone, **CASES[case]).fit(X, y).predict_proba(TRAINED_QUERIES)
    np.testing.assert_array_equal(a, b)


def test_the_committed_rows_put_the_tolerance_between_the_noise_and_a_real_change():
    rows = json.loads((DATA / "tolerance_rows.json").read_text())
    assert sorted(r["case"] for r in rows) == sorted(CASES)  # measured on every case pinned here
    noise = max(r[k] for r in rows for k in ("avx2", "default_isa", "threads1"))
    real = min(r[k] for r in rows for k in ("lr_x1.05", "lr_x0.95"))
    assert noise < ATOL < real and real >= MARGIN * noise
    assert max(r["pinned"] for r in rows) < ATOL  # the pins themselves were remade with the code measured


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

    Mutation check: ``ATOL`` set to 1e-9 -> fails.
    """
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    if variant == "default_isa":
        env["ATEN_CPU_CAPABILITY"] = "default"
    out = subprocess.run([sys.executable, "-c", _CHILD, str(Path(__file__).parent), reference_backbone, "default",
                          "1" if variant == "threads1" else "0"], capture_output=True, text=True, env=env, check=True)
    other = np.asarray(json.loads(out.stdout.strip().splitlines()[-1]))
    here = _fitted(reference_backbone, "default").predict_proba(TRAINED_QUERIES)
    _assert_same_predictions(other, here)


def test_a_real_change_of_the_default_fit_moves_it_past_the_tolerance(reference_backbone):
    """The other side, measured here: the learning rate 5% up moves the default fit's pins past ``MARGIN`` x ``ATOL``."""
    base = _fitted(reference_backbone, "default")
    changed = _fitted(reference_backbone, "default", learning_rate=1.05 * base.learning_rate_)
    assert np.abs(changed.predict_proba(TRAINED_QUERIES) - base.predict_proba(TRAINED_QUERIES)).max() > MARGIN * ATOL


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_model_files_of_the_current_format_still_load(name):
    expected = np.asarray(json.loads((DATA / "legacy_predictions.json").read_text())[name])
    clf = TokenSparseClassifier.load(DATA / f"legacy_{name}.safetensors", device="cpu")
    _assert_same_predictions(clf.predict_proba(QUERIES), expected)
    assert list(clf.classes_) == ["card", "pin", "refund"]
