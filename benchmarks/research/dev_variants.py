"""Part ``dev_variants``: ways of ending a fit, compared on a development split carved from the training set.

The validation split that fit holds out is small (one text per class in 10-shot), so it cannot
rank ways of ending a fit that differ by tenths of a point. This part takes a larger
development split out of the *training* set instead: in 10-shot, up to ``dev_size`` texts
that the 10-shot sample did not draw; in the full regime, ``dev_fraction`` of the training
set, stratified, which the fit never sees. The official test split is not read.

One default fit per seed; at the interpolation stage every variant below is built from the
same trained weights and scored on the dev split:

``probe``            the linear probe the finetune started from (a = 0)
``finetune``         the best epoch as trained (a = 1)
``default``          the point on the probe -> finetune line chosen on validation, never below the frozen probe
``refit_train``      ``default``'s encoder, head refit by logistic regression on the training part
``refit_all``        same, head refit on every labelled text fit was given (what ``refit_head=True`` keeps)
``probe_all``        frozen encoder, head fit on every labelled text (the free reference)
``epoch_average``    probe -> uniform average of the epochs' weights, point chosen on validation
``epoch_average_refit_all``  that point with the head refit on every labelled text
"""

from __future__ import annotations

import time

import numpy as np
import torch
from skorch.callbacks import Callback

from sksparseft import TokenSparseClassifier
from sksparseft.fit.interpolation import load_interpolated_, select_interpolation, validation_scores
from sksparseft.fit.training import fit_head_on_features
from sksparseft.model.inference import eval_batch_size

from ..common import MODEL, append_row, encode_labelled, how_run, train_dev


class Snapshots(Callback):
    """The trainable weights at the end of every epoch (a user callback: it sees the epoch that early
    stopping ends on too)."""

    def __init__(self, store):
        self.store = store

    def on_epoch_end(self, net, **kw):
        self.store.append(net.module_.trainable_state())  # already a copy


class DevScoredEnding(TokenSparseClassifier):
    """The default estimator; its interpolation stage also scores every variant on a dev split."""

    def stage_interpolation(self, state):
        module, selection, bs, device = state.module, state.selection, eval_batch_size(self.batch_size), state.device
        start, end_state = selection.start, module.trainable_state()
        dev = encode_labelled(state, self._dev_texts, self._dev_labels, self.max_length)
        scores = self.dev_scores_ = {}

        def refit(parts):
            # The parts are rows of one encoding (same padded width): they concatenate.
            enc = {k: np.concatenate([e[k] for e, _ in parts]) for k in parts[0][0]}
            fit_head_on_features(module, enc, np.concatenate([t for _, t in parts]), bs, device)
            return validation_scores(module, dev, bs, device)

        train_part = (state.train_encodings, state.y_train)
        every = [train_part, state.valid_data]
        load_interpolated_(module, start, end_state, 0.0)
        scores["probe"] = validation_scores(module, dev, bs, device)
        scores["probe_all"] = refit(every)
        module.load_trainable_state_(end_state)
        scores["finetune"] = validation_scores(module, dev, bs, device)
        average = {n: torch.stack([s[n] for s in self._snapshots]).mean(0) for n in end_state}
        self.a_epoch_average_, _ = select_interpolation(module, start, average, selection.score)
        scores["epoch_average"] = validation_scores(module, dev, bs, device)
        scores["epoch_average_refit_all"] = refit(every)
        module.load_trainable_state_(end_state)
        super().stage_interpolation(state)  # the package's choice: the blend, never below the frozen probe
        scores["default"] = validation_scores(module, dev, bs, device)
        head = {n: v.clone() for n, v in module.head.state_dict().items()}
        scores["refit_train"] = refit([train_part])
        scores["refit_all"] = refit(every)
        module.head.load_state_dict(head)  # fit goes on with what it chose


def one_fit(dataset, regime, seed, dev_size, dev_fraction):
    X, y, Xd, yd = train_dev(dataset, regime, seed, dev_size, dev_fraction)
    snaps = []
    clf = DevScoredEnding(MODEL, random_state=seed, callbacks=[Snapshots(snaps)])
    clf._dev_texts, clf._dev_labels, clf._snapshots = Xd, yd, snaps
    t0 = time.perf_counter()
    clf.fit(X, y)
    return {
        "dataset": dataset, "regime": regime, "seed": seed, "n_fit": len(X), "n_dev": len(Xd),
        "a_default": clf.interpolation_, "a_epoch_average": clf.a_epoch_average_, "n_epochs": len(snaps),
        "dev": clf.dev_scores_, "fit_s_including_variants": time.perf_counter() - t0, **how_run(),
    }


def run(cfg, out, args):
    for job in cfg["jobs"]:
        if args.datasets and job["dataset"] not in args.datasets:
            continue
        for seed in [s for s in job["seeds"] if not args.seeds or s in args.seeds]:
            row = one_fit(job["dataset"], job["regime"], seed, job.get("dev_size", 3000), job.get("dev_fraction", 0.2))
            append_row(out, row)
            print(f"{job['dataset']} {job['regime']} seed {seed} ({row['n_fit']} fit / {row['n_dev']} dev texts, "
                  f"a={row['a_default']:g}): " + "  ".join(f"{k} {v[0]:.4f}" for k, v in row["dev"].items()), flush=True)
