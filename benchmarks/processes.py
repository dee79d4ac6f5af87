"""Part ``processes``: the default fit in one process and data-parallel over several (``accelerate=True``).

One 10-shot sample per seed (dev split carved from the training set). The one-process fit is a
plain fit with every core; the data-parallel fit runs under ``torch.distributed.run`` with the
cores split between the processes (gloo on CPU). Every stage runs in both, the contrastive stage
included. Rows append as they come.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import MODEL, ROOT, append_row, how_run, train_dev


def fit_and_score(spec, out):
    """Fit the default on the sample and write its dev accuracy (in every process: rank 0's file is read)."""
    import torch
    from sklearn.metrics import accuracy_score

    from sksparseft import TokenSparseClassifier

    X, y, Xd, yd = train_dev(spec["dataset"], "10shot", spec["seed"], spec["dev_size"], 0.2)
    torch.manual_seed(spec["seed"])
    t0 = time.perf_counter()
    clf = TokenSparseClassifier(MODEL, random_state=spec["seed"], accelerate=spec["processes"] > 1,
                                **spec.get("params", {})).fit(X, y)
    fit_s = time.perf_counter() - t0
    rank = int(os.environ.get("RANK", 0))
    if rank == 0:
        row = dict(spec, fit_s=fit_s, dev_accuracy=float(accuracy_score(yd, clf.predict(Xd))),
                   stages=clf.fit_stages_, epochs=len(clf.history_) - 1, interpolation=clf.interpolation_,
                   n_fit=len(X), n_dev=len(Xd), **how_run())
        Path(out).write_text(json.dumps(row))


def run(cfg, out, args):
    cores = os.cpu_count() or 1
    for dataset in [d for d in cfg["datasets"] if not args.datasets or d in args.datasets]:
        for seed in [s for s in cfg["seeds"] if not args.seeds or s in args.seeds]:
            for processes in cfg["processes"]:
                spec = {"config": cfg.get("name", "processes"), "dataset": dataset, "seed": seed,
                        "processes": processes, "dev_size": cfg.get("dev_size", 1500), "params": cfg.get("estimator", {})}
                with tempfile.TemporaryDirectory() as tmp:
                    result = Path(tmp) / "row.json"
                    env = dict(os.environ, OMP_NUM_THREADS=str(max(cores // processes, 1)), PYTHONPATH=str(ROOT))
                    launch = ([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                               "--master_port=29555"] if processes > 1 else [sys.executable])
                    t0 = time.perf_counter()
                    proc = subprocess.run(launch + ["-m", "benchmarks.processes", json.dumps(spec), str(result)],
                                          env=env, cwd=ROOT, capture_output=True, text=True)
                    wall = time.perf_counter() - t0
                    if proc.returncode == 0 and result.is_file():
                        row = json.loads(result.read_text())
                        row["wall_s"] = wall
                    else:
                        row = {**spec, "error": proc.stderr[-2000:], **how_run()}
                append_row(out, row)
                print(f"{dataset} seed {seed} {processes} process(es): "
                      + (f"dev {row['dev_accuracy']:.4f} fit {row['fit_s']:.0f}s" if "dev_accuracy" in row
                         else "failed"), flush=True)


if __name__ == "__main__":
    fit_and_score(json.loads(sys.argv[1]), sys.argv[2])
