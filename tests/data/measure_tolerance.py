"""The two sizes that set the tolerance of tests/test_reference.py, measured on every reference case.

Run from the repository root: ``python tests/data/measure_tolerance.py [CASE ...]`` (minutes;
writes tests/data/tolerance_rows.json, replacing the rows of the cases named, or all). Each case is fitted in a fresh process six ways:

- ``base``: as the reference test fits it;
- float noise another machine can bring: ``avx2`` and ``default_isa`` (``ATEN_CPU_CAPABILITY``:
  torch's kernels for another instruction set) and ``threads1`` (one thread: another
  summation order);
- a real change of the fit: the learning rate times 1.05 or 0.95.

Each row holds the largest absolute difference of ``predict_proba`` from ``base`` (and from the
pinned reference, ``pinned``), and whether the labels stay the same. The tolerance must lie
above every noise figure and below every non-zero real change (a zero means the fit fell back
to the frozen probe, which no learning rate moves).
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
MODE = sys.argv[1] if len(sys.argv) > 1 else "driver"
if MODE == "child":
    import torch

    if os.environ.get("THREADS"):
        torch.set_num_threads(int(os.environ["THREADS"]))
    from reference_cases import CASES, TRAINED_QUERIES, trained_texts
    from sksparseft import TokenSparseClassifier
    from sksparseft.strategies import get_strategy
    folder, scale, out = sys.argv[2], float(sys.argv[3]), sys.argv[4]
    X, y = trained_texts()
    res = {}
    only = [c for c in os.environ.get("MEASURE_CASES", "").split(",") if c]
    for name, params in CASES.items():
        if only and name not in only:
            continue
        p = dict(params)
        if scale != 1.0:  # the case's own learning rate, or its strategy's customary one
            clf0 = TokenSparseClassifier(folder, **params)
            lr = params.get("learning_rate") or get_strategy(clf0.strategy, clf0.strategy_options).default_learning_rate
            p["learning_rate"] = scale * lr
        clf = TokenSparseClassifier(folder, **p).fit(X, y)
        res[name] = clf.predict_proba(TRAINED_QUERIES).tolist()
    json.dump(res, open(out, "w"))
    sys.exit()
from reference_cases import CASES, make_tiny_bert  # noqa: E402
ONLY = sys.argv[1:]
os.environ["MEASURE_CASES"] = ",".join(ONLY)
tmp = tempfile.mkdtemp(); folder = make_tiny_bert(tmp)
runs = {"base": ({}, 1.0), "avx2": ({"ATEN_CPU_CAPABILITY": "avx2"}, 1.0), "default_isa": ({"ATEN_CPU_CAPABILITY": "default"}, 1.0),
        "threads1": ({"THREADS": "1"}, 1.0), "lr_x1.05": ({}, 1.05), "lr_x0.95": ({}, 0.95)}
out = {}
for name, (env, scale) in runs.items():
    path = f"{tmp}/{name}.json"
    subprocess.run([sys.executable, __file__, "child", folder, str(scale), path], env={**os.environ, **env}, check=True)
    out[name] = json.load(open(path)); print("done", name, flush=True)
ref = np.load(Path(__file__).with_name("reference.npz"))
ROWS = Path(__file__).with_name("tolerance_rows.json")
kept = {r["case"]: r for r in json.loads(ROWS.read_text())} if ONLY and ROWS.exists() else {}
for case in out["base"]:
    b = np.asarray(out["base"][case])
    r = {"case": case, "pinned": float(np.abs(b - ref[case]).max())}
    for k in runs:
        if k != "base":
            o = np.asarray(out[k][case]); r[k] = float(np.abs(o - b).max()); r[k + "_labels_same"] = bool((o.argmax(1) == b.argmax(1)).all())
    kept[case] = r; print(r)
ROWS.write_text(json.dumps([kept[c] for c in CASES if c in kept], indent=1))
