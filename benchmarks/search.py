"""Part ``search``: what a cross-validated search costs, with and without ``memory``.

Each run in a fresh process, on one 10-shot sample (dev split carved from the training set, as in
the dev screens): one default fit, one ``full`` fit, the frozen-embedding reference, and
``GridSearchCV(cv=5)`` over the config's grid without ``memory`` and with an empty ``memory``
folder. A search's seconds include scikit-learn's refit of the best candidate on every text; its
dev accuracy is that refit's. Rows append as they come.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from .common import MODEL, append_row, how_run, in_fresh_process, peak_memory, train_dev


def _folder_size(path):
    files = [p for p in Path(path).rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def one_run(spec, queue):
    import torch
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from sksparseft import TokenSparseClassifier

    from .compare import reference

    X, y, Xd, yd = train_dev(spec["dataset"], "10shot", spec["seed"], spec["dev_size"], 0.2)
    torch.manual_seed(spec["seed"])
    row = dict(spec)
    memory = tempfile.mkdtemp(prefix="sksparseft-memory-") if spec.get("memory") else None
    t0 = time.perf_counter()
    try:
        if spec["kind"] == "reference":
            model = reference(spec["method"], X, y, seed=spec["seed"])
        elif spec["kind"] == "fit":
            model = TokenSparseClassifier(MODEL, random_state=spec["seed"], **spec.get("params", {})).fit(X, y)
            row["stages"] = model.fit_stages_
        else:
            base = TokenSparseClassifier(MODEL, random_state=spec["seed"], memory=memory, **spec.get("params", {}))
            cv = StratifiedKFold(n_splits=spec["folds"], shuffle=True, random_state=spec["seed"])
            search = GridSearchCV(base, spec["grid"], cv=cv, n_jobs=1).fit(X, y)
            model = search.best_estimator_
            row.update(n_fits=len(search.cv_results_["params"]) * spec["folds"] + 1,
                       best_params=search.best_params_, best_cv_accuracy=float(search.best_score_),
                       mean_fit_s=[float(v) for v in search.cv_results_["mean_fit_time"]])
        row["fit_s"] = time.perf_counter() - t0
        row["dev_accuracy"] = float(accuracy_score(yd, model.predict(Xd)))
        if memory:
            row["memory_files"], row["memory_bytes"] = _folder_size(memory)
    except Exception as exc:  # a failed run is a result too
        row["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if memory:
            shutil.rmtree(memory, ignore_errors=True)
    row.update(n_fit=len(X), n_dev=len(Xd), **peak_memory(), **how_run())
    queue.put(row)


def run(cfg, out, args):
    for dataset in [d for d in cfg["datasets"] if not args.datasets or d in args.datasets]:
        for seed in [s for s in cfg["seeds"] if not args.seeds or s in args.seeds]:
            for name, run_spec in cfg["runs"].items():
                if args.only and name not in args.only:
                    continue
                spec = {"config": cfg.get("name", "search"), "run": name, "dataset": dataset, "seed": seed,
                        "dev_size": cfg.get("dev_size", 1500), **run_spec}
                if spec["kind"] == "search":
                    spec.update(grid=cfg["grid"], folds=cfg["folds"])
                row = in_fresh_process(one_run, spec) or {**spec, "error": "process died", **how_run()}
                append_row(out, row)
                print(f"{dataset} seed {seed} {name}: " + (f"dev {row['dev_accuracy']:.4f} in {row['fit_s']:.0f}s"
                                                           if "dev_accuracy" in row else row["error"]), flush=True)
