"""Sweep a few TokenSparseClassifier settings on BANKING77; choose by validation accuracy, not test.

Writes one JSON line per run (settings, best validation accuracy, test accuracy, fit time,
device) so that defaults are picked on the validation split held out of the training set.

    python benchmarks/tune_defaults.py --out results.jsonl [--model PATH] [--budget-s 420]
"""

import argparse
import json
import platform
import time

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from sksparseft import TokenSparseClassifier
from sksparseft.datasets import load_banking77

GRID = [
    {},
    {"learning_rate": 5e-4},
    {"learning_rate": 2e-3},
    {"head_learning_rate": 1e-4},
    {"learning_rate": 2e-3, "head_learning_rate": 1e-4},
    {"density": 0.03},
    {"max_epochs": 12},
    {"head_init": "random"},
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--max-epochs", type=int, default=None)
    ap.add_argument("--budget-s", type=float, default=float("inf"), help="start no new run after this many seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", type=int, default=None, help="run only this row of GRID (for parallel runs)")
    args = ap.parse_args()
    X, y = load_banking77("train", return_X_y=True)
    Xt, yt = load_banking77("test", return_X_y=True)
    if args.n_train:
        X, _, y, _ = train_test_split(X, y, train_size=args.n_train, stratify=y, random_state=args.seed)
    start = time.perf_counter()
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else platform.processor() or "cpu"
    grid = GRID if args.only is None else [GRID[args.only]]
    for extra in grid:
        if time.perf_counter() - start > args.budget_s:
            break
        params = {"model": args.model, "random_state": args.seed, "device": args.device, **extra}
        if args.max_epochs:
            params["max_epochs"] = args.max_epochs
        clf = TokenSparseClassifier(**params).fit(X, y)
        acc = float(np.mean(clf.predict(Xt) == yt))
        row = {
            "settings": extra, "n_train": len(X), "seed": args.seed, "device": dev,
            "valid_acc_probe": clf.history_[0].get("valid_acc"),
            "valid_acc_best": max(r.get("valid_acc", 0) for r in clf.history_[1:]),
            "valid_acc_curve": [round(r.get("valid_acc", 0), 4) for r in clf.history_],
            "epochs": len(clf.history_) - 1, "finetuned": clf.finetuned_,
            "test_acc": acc, "fit_s": clf.fit_time_, "trainable": clf.n_trainable_params_,
        }
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
