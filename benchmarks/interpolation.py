"""Part ``interpolation``: what the probe-to-finetune blend (WiSE-FT) buys, scored on test.

One default fit per seed. Every point ``a`` that the selection measured on the validation
split is also scored on the test split (reported only; every choice is made on validation),
so one fit gives the test accuracy of the probe (a=0), of the finetune as trained (a=1), of
the either/or rule (``interpolate_weights=False``: probe or finetune, whichever is better on
validation), of the interpolation, and of the fitted estimator (``final``: with
``refit_head``, the head refit on every labelled text after the choice).
"""

from __future__ import annotations

import time

from sksparseft import TokenSparseClassifier
from sksparseft.fit.interpolation import load_interpolated_, validation_scores
from sksparseft.model.inference import eval_batch_size

from .common import MODEL, append_row, encode_labelled, how_run, load


class InterpolationScoredOnTest(TokenSparseClassifier):
    """The default estimator, with every interpolation point it measures also scored on a test split."""

    def stage_interpolation(self, state):
        module, selection = state.module, state.selection
        end_state = module.trainable_state()
        super().stage_interpolation(state)
        kept = module.trainable_state()
        test = encode_labelled(state, self._test_texts, self._test_labels, self.max_length)
        self.test_scores_ = {}
        for b in selection.scores:
            load_interpolated_(module, selection.start, end_state, b)
            self.test_scores_[b] = validation_scores(module, test, eval_batch_size(self.batch_size), state.device)
        module.load_trainable_state_(kept)


def one_fit(dataset, regime, seed, strategy):
    X, y, Xt, yt, _ = load(dataset, regime, seed)
    clf = InterpolationScoredOnTest(MODEL, strategy=strategy, random_state=seed)
    clf._test_texts, clf._test_labels = Xt, yt
    t0 = time.perf_counter()
    clf.fit(X, y)
    fit_s = time.perf_counter() - t0
    valid, test = clf.interpolation_scores_, clf.test_scores_
    either_or = 1.0 if valid[1.0][0] >= valid[0.0][0] else 0.0
    return {
        "dataset": dataset, "regime": regime, "seed": seed, "strategy": strategy, "n_train": len(X), "n_test": len(Xt),
        "chosen": clf.interpolation_, "either_or": either_or,
        "test_acc": {"probe": test[0.0][0], "finetune": test[1.0][0], "either_or": test[either_or][0],
                     "interpolated": test[clf.interpolation_][0], "final": float(clf.score(Xt, yt))},
        "refit_head": clf.refit_head,
        "valid": {str(a): s for a, s in valid.items()}, "test": {str(a): s for a, s in test.items()},
        "valid_curve": [r.get("valid_acc") for r in clf.history_],
        # The interpolation stage also scored the test split here (not part of a normal fit).
        "fit_s_including_test_scoring": fit_s, "stages": dict(clf.fit_stages_), **how_run(),
    }


def run(cfg, out, args):
    for job in cfg["jobs"]:
        if args.datasets and job["dataset"] not in args.datasets:
            continue
        for seed in [s for s in job["seeds"] if not args.seeds or s in args.seeds]:
            row = one_fit(job["dataset"], job["regime"], seed, job.get("strategy", "token_sparse"))
            append_row(out, row)
            acc = row["test_acc"]
            print(f"{job['dataset']} {job['regime']} {row['strategy']} seed {seed}: a={row['chosen']:g}  test acc probe "
                  f"{acc['probe']:.4f}  finetune {acc['finetune']:.4f}  either/or {acc['either_or']:.4f}  "
                  f"interpolated {acc['interpolated']:.4f}  fitted model {acc['final']:.4f}", flush=True)
