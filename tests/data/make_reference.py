"""Regenerate the frozen references of tests/test_reference.py.

Run from the repository root with the code whose behaviour the references must pin:

    python tests/data/make_reference.py                 # every case and the model files
    python tests/data/make_reference.py CASE [CASE...]  # add or redo only these cases

It fits every case of ``tests/reference_cases.py`` on the config-built tiny BERT and the
``trained_texts()`` task, and stores ``predict_proba`` on ``TRAINED_QUERIES`` (reference.npz);
it saves two model files of the current format against the packaged all-MiniLM-L6-v2 (the
files every later version must still load), with their predictions on ``QUERIES``. Only rerun it on purpose: the references are the check that a
refactor changed nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main(only=()):
    import tempfile

    from reference_cases import CASES, LEGACY, QUERIES, TRAINED_QUERIES, make_tiny_bert, toy_texts, trained_texts

    from sksparseft import TokenSparseClassifier

    X, y = trained_texts()
    out = {k: v for k, v in np.load(HERE / "reference.npz").items() if k in CASES} if only else {}
    with tempfile.TemporaryDirectory() as tmp:
        tiny = make_tiny_bert(tmp)
        for name, params in CASES.items():
            if only and name not in only:
                continue
            clf = TokenSparseClassifier(tiny, **params).fit(X, y)
            out[name] = clf.predict_proba(TRAINED_QUERIES)
            print(name, out[name].shape, flush=True)
    np.savez_compressed(HERE / "reference.npz", **out)
    if only:
        return  # the model files of the current format stay as they were
    legacy = {}
    X, y = toy_texts()
    for name, params in LEGACY.items():
        clf = TokenSparseClassifier(**params).fit(X, y)
        path = HERE / f"legacy_{name}.safetensors"
        clf.save(path)
        legacy[name] = clf.predict_proba(QUERIES).tolist()
        print(name, path.stat().st_size, flush=True)
    (HERE / "legacy_predictions.json").write_text(json.dumps(legacy))


if __name__ == "__main__":
    main(tuple(sys.argv[1:]))
