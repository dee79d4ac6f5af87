"""Choosing how fit ends, on a development split carved from the training set (never test).

    python benchmarks/dev_variants.py --dataset banking77 --regime 10shot --seeds 0 1 2
    python benchmarks/dev_variants.py --dataset banking77 --regime full --seeds 0 --dev-fraction 0.2

The validation split that fit holds out is small (one text per class in 10-shot), so it cannot
rank ways of ending a fit that differ by tenths of a point. This script takes a larger
development split out of the *training* set instead: in 10-shot, up to ``--dev-size`` texts
that the 10-shot sample did not draw; in the full regime, ``--dev-fraction`` of the training
set, stratified, which the fit never sees. The official test split is not read.

One default fit per seed; at the end of training (patched into fit) every variant below is
built from the same trained weights and scored on the dev split:

``probe``            the linear probe the finetune started from (a = 0)
``finetune``         the best epoch as trained (a = 1)
``default``          the point on the probe -> finetune line chosen on validation (what fit keeps)
``refit_train``      ``default``'s encoder, head refit by logistic regression on the training part
``refit_all``        same, head refit on every labelled text fit was given (training + validation)
``probe_all``        frozen encoder, head fit on every labelled text (the free reference)
``epoch_average``    probe -> uniform average of the epochs' weights, point chosen on validation
``epoch_average_refit_all``  that point with the head refit on every labelled text

Rows append to ``benchmarks/results/dev_variants.jsonl``.
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch
from skorch.callbacks import Callback

import sksparseft.estimator as estimator
from sksparseft import TokenSparseClassifier
from sksparseft.interpolation import load_interpolated_, validation_scores

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interpolation import how_run, test_split  # noqa: E402  (test_split encodes any labelled texts as fit does)
from run import DATASETS, MODEL, RESULTS, load  # noqa: E402


def train_dev(dataset, regime, seed, dev_size, dev_fraction):
    """(fit texts, fit labels, dev texts, dev labels), all from the official training split."""
    X_all, y_all, _, _, _ = load(dataset, "full", seed)
    y_all = np.asarray(y_all, dtype=object)
    rng = np.random.default_rng(1000 + seed)
    if regime == "10shot":
        X, y, _, _, _ = load(dataset, "10shot", seed)
        taken = set(X)
        rest = np.array([i for i, t in enumerate(X_all) if t not in taken])
        dev = rng.choice(rest, min(dev_size, len(rest)), replace=False)
        return X, y, [X_all[i] for i in dev], y_all[dev]
    dev = np.concatenate([
        rng.choice(idx, max(1, int(round(dev_fraction * len(idx)))), replace=False)
        for idx in (np.flatnonzero(y_all == c) for c in sorted(set(y_all)))
    ])
    keep = np.setdiff1d(np.arange(len(X_all)), dev)
    return [X_all[i] for i in keep], y_all[keep], [X_all[i] for i in dev], y_all[dev]


class Snapshots(Callback):
    """The trainable weights after every epoch."""

    def __init__(self, store):
        self.store = store

    def on_epoch_end(self, net, **kw):
        self.store.append(net.module_.trainable_state())  # already a copy


def one_fit(dataset, regime, seed, dev_size, dev_fraction):
    X, y, Xd, yd = train_dev(dataset, regime, seed, dev_size, dev_fraction)
    snaps, seen = [], {}
    clf = TokenSparseClassifier(MODEL, random_state=seed, callbacks=[Snapshots(snaps)])
    dev = test_split(y, Xd, yd, clf.max_length)
    dev_scores = {}
    select, fit_head = estimator.select_interpolation, estimator.fit_head_on_features

    def probe_spy(module, enc, y_part, *args, **kw):
        seen.setdefault("train_part", (enc, y_part))  # the first call is the probe's: the training part
        return fit_head(module, enc, y_part, *args, **kw)

    def variants(module, start, end, valid_data, bs, device, known=None):
        def dev_score():
            return validation_scores(module, dev, bs, device)

        def refit(parts):
            # Both parts are rows of one encoding (same padded width): they concatenate.
            enc = {k: np.concatenate([e[k] for e, _ in parts]) for k in parts[0][0]}
            fit_head(module, enc, np.concatenate([t for _, t in parts]), bs, device)
            return dev_score()

        train_part = seen["train_part"]
        every = [train_part, valid_data]
        load_interpolated_(module, start, end, 0.0)
        dev_scores["probe"] = dev_score()
        dev_scores["probe_all"] = refit(every)
        load_interpolated_(module, start, end, 1.0)
        dev_scores["finetune"] = dev_score()
        average = {n: torch.stack([s[n] for s in snaps]).mean(0) for n in end}
        a_avg, _ = select(module, start, average, valid_data, bs, device, known=known)
        dev_scores["epoch_average"] = dev_score()
        dev_scores["epoch_average_refit_all"] = refit(every)
        seen["a_epoch_average"] = a_avg
        a, scores = select(module, start, end, valid_data, bs, device, known=known)
        dev_scores["default"] = dev_score()
        head = {n: v.clone() for n, v in module.head.state_dict().items()}
        dev_scores["refit_train"] = refit([train_part])
        dev_scores["refit_all"] = refit(every)
        module.head.load_state_dict(head)  # fit goes on with what it chose
        return a, scores

    estimator.select_interpolation = variants
    estimator.fit_head_on_features = probe_spy
    try:
        t0 = time.perf_counter()
        clf.fit(X, y)
        fit_s = time.perf_counter() - t0
    finally:
        estimator.select_interpolation, estimator.fit_head_on_features = select, fit_head
    return {
        "dataset": dataset, "regime": regime, "seed": seed, "n_fit": len(X), "n_dev": len(Xd),
        "a_default": clf.interpolation_, "a_epoch_average": seen["a_epoch_average"], "n_epochs": len(snaps),
        "dev": dev_scores, "fit_s_including_variants": fit_s, **how_run(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=DATASETS, default="banking77")
    ap.add_argument("--regime", choices=["full", "10shot"], default="10shot")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--dev-size", type=int, default=3000, help="10-shot: dev texts drawn from the unused training texts")
    ap.add_argument("--dev-fraction", type=float, default=0.2, help="full: fraction of the training set kept for dev")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(f"{args.dataset} {args.regime}, seeds {args.seeds}, model {MODEL}; {platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    for seed in args.seeds:
        row = one_fit(args.dataset, args.regime, seed, args.dev_size, args.dev_fraction)
        with (RESULTS / "dev_variants.jsonl").open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"seed {seed} ({row['n_fit']} fit / {row['n_dev']} dev texts, a={row['a_default']:g}): "
              + "  ".join(f"{k} {v[0]:.4f}" for k, v in row["dev"].items()), flush=True)


if __name__ == "__main__":
    main()
