"""Weight interpolation (WiSE-FT) between the linear probe and the finetune: what it buys.

    python benchmarks/interpolation.py --dataset banking77 --regime full --seeds 0 1 2
    python benchmarks/interpolation.py --dataset clinc150 --regime 10shot --seeds 0 1 2
    python benchmarks/interpolation.py --strategy layers      # any strategy; default token_sparse

One default fit per seed (``interpolate_weights=True``). Besides the chosen point, every point
``a`` that the selection measured on the validation split is also scored on the test split, so
one fit gives the test accuracy of the probe (a=0), of the finetune as trained (a=1), of the
older either/or rule (probe or finetune, whichever is better on validation) and of the
interpolation, and the fitted estimator itself (``final``: with ``refit_head``, the head refit on
every labelled text after the choice). Test scores are reported only; every choice is made on
validation. Rows append
to ``benchmarks/results/interpolation.jsonl``.
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

import sksparseft.estimator as estimator
from sksparseft import TokenSparseClassifier
from sksparseft.backbone import load_backbone
from sksparseft.interpolation import load_interpolated_, validation_scores
from sksparseft.tokens import encode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import DATASETS, MODEL, RESULTS, load  # noqa: E402


def test_split(y, Xt, yt, max_length):
    """The test texts encoded as fit encodes them, and their labels as class indices.

    The tokenizer is the backbone's own: right for fits without adaptive tokenization.
    """
    tokenizer = load_backbone(MODEL)[0]
    classes = np.unique(np.asarray(y, dtype=object))
    return encode(tokenizer, list(Xt), max_length), np.searchsorted(classes, yt)


def how_run():
    """Device, torch version and machine, for a result row."""
    return {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
            "torch": torch.__version__, "machine": platform.machine()}


def one_fit(dataset, regime, seed, strategy):
    X, y, Xt, yt, _ = load(dataset, regime, seed)
    clf = TokenSparseClassifier(MODEL, strategy=strategy, random_state=seed)
    test = test_split(y, Xt, yt, clf.max_length)
    test_scores = {}
    select = estimator.select_interpolation

    def select_and_score_test(module, start, end, valid_data, batch_size, device, known=None):
        a, scores = select(module, start, end, valid_data, batch_size, device, known=known)
        for b in scores:
            load_interpolated_(module, start, end, b)
            test_scores[b] = validation_scores(module, test, batch_size, device)
        load_interpolated_(module, start, end, a)
        return a, scores

    estimator.select_interpolation = select_and_score_test
    try:
        t0 = time.perf_counter()
        clf.fit(X, y)
        fit_s = time.perf_counter() - t0
    finally:
        estimator.select_interpolation = select
    valid = clf.interpolation_scores_
    either_or = 1.0 if valid[1.0][0] >= valid[0.0][0] else 0.0
    stages = dict(clf.fit_stages_)
    return {
        "dataset": dataset, "regime": regime, "seed": seed, "strategy": strategy, "n_train": len(X), "n_test": len(Xt),
        "chosen": clf.interpolation_, "either_or": either_or,
        "test_acc": {"probe": test_scores[0.0][0], "finetune": test_scores[1.0][0],
                     "either_or": test_scores[either_or][0], "interpolated": test_scores[clf.interpolation_][0],
                     # What the fitted estimator predicts: the interpolated weights, head refit if refit_head.
                     "final": float(clf.score(Xt, yt))},
        "refit_head": clf.refit_head,
        "valid": {str(a): s for a, s in valid.items()}, "test": {str(a): s for a, s in test_scores.items()},
        "valid_curve": [r.get("valid_acc") for r in clf.history_],
        # The interpolation stage also scored the test split here (not part of a normal fit).
        "fit_s_including_test_scoring": fit_s, "stages": stages, **how_run(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=DATASETS, default="banking77")
    ap.add_argument("--regime", choices=["full", "10shot"], default="full")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--strategy", default="token_sparse")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(f"{args.dataset} {args.regime}, {args.strategy}, seeds {args.seeds}, model {MODEL}; {platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    for seed in args.seeds:
        row = one_fit(args.dataset, args.regime, seed, args.strategy)
        with (RESULTS / "interpolation.jsonl").open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        acc = row["test_acc"]
        print(f"seed {seed}: a={row['chosen']:g}  test acc probe {acc['probe']:.4f}  finetune {acc['finetune']:.4f}  "
              f"either/or {acc['either_or']:.4f}  interpolated {acc['interpolated']:.4f}  fitted model {acc['final']:.4f}  "
              f"(fit {row['fit_s_including_test_scoring']:.0f} s)", flush=True)
    rows = [json.loads(line) for line in (RESULTS / "interpolation.jsonl").open()]
    key = (args.dataset, args.regime, args.strategy, True)
    rows = [r for r in rows if (r["dataset"], r["regime"], r.get("strategy", "token_sparse"), r.get("refit_head", False)) == key]
    for kind in ("probe", "finetune", "either_or", "interpolated", "final"):
        v = np.array([r["test_acc"][kind] for r in rows])
        spread = v.std(ddof=1) if len(v) > 1 else 0.0
        print(f"{kind:>12}: {v.mean():.4f} +- {spread:.4f} (sample std) over {len(v)} seeds ({' '.join(key[:3])}, head refit)")


if __name__ == "__main__":
    main()
