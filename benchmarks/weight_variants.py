"""Diagnostic (session 4): other points in weight space than the probe -> best-epoch line.

    python benchmarks/weight_variants.py banking77 10shot 0      # dataset, regime, seed

One default fit with a snapshot of the trainable weights after every epoch. At the end of
training, scores on validation and test: the line probe -> best epoch (what fit searches), the
line probe -> uniform average of the epochs' weights, that average with the probe included, and
the head refit by logistic regression on the training features of the best interpolated encoder.
Prints one JSON line per fit; test scores are for reading only. It patches estimator internals
(select_interpolation, fit_head_on_features) to see inside fit.
"""
import json
import os
import sys
import time

import torch
from skorch.callbacks import Callback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sksparseft.estimator as est_mod  # noqa: E402
from interpolation import test_split  # noqa: E402
from run import load  # noqa: E402
from sksparseft import TokenSparseClassifier  # noqa: E402
from sksparseft.interpolation import load_interpolated_, validation_scores  # noqa: E402

dataset, regime, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
X, y, Xt, yt, _ = load(dataset, regime, seed)
snaps = []


class Snap(Callback):
    def on_epoch_end(self, net, **kw):
        snaps.append(net.module_.trainable_state())  # already a copy


clf = TokenSparseClassifier(random_state=seed, callbacks=[Snap()])
test = test_split(y, Xt, yt, clf.max_length)
out = {"dataset": dataset, "regime": regime, "seed": seed}
orig_select = est_mod.select_interpolation
state = {}


def wrapped(module, start, end, valid_data, bs, device, known=None):
    def score(st=None):
        if st is not None:
            module.load_trainable_state_(st)
        return validation_scores(module, valid_data, bs, device)[0], validation_scores(module, test, bs, device)[0]

    def line(a_state, b_state, grid):
        scores = {}
        for a in grid:
            load_interpolated_(module, a_state, b_state, a)
            scores[a] = score()
        return scores

    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    res = {}
    res["probe_to_best"] = line(start, end, grid)
    soup = {n: torch.stack([s[n] for s in snaps]).mean(0) for n in end}
    res["probe_to_soup"] = line(start, soup, grid)
    soup_all = {n: torch.stack([start[n]] + [s[n] for s in snaps]).mean(0) for n in end}
    res["soup_with_probe"] = {1.0: score(soup_all)}
    # Re-probe: the head refit by logistic regression on the interpolated encoder's training features.
    best_a = max(res["probe_to_best"], key=lambda a: (res["probe_to_best"][a][0], a))
    load_interpolated_(module, start, end, best_a)
    orig_fit_head(module, state["enc_train"], state["y_train"], bs, device)
    res["reprobe_at_best_a"] = {best_a: score()}
    out["variants"] = {k: {str(a): v for a, v in d.items()} for k, d in res.items()}
    out["n_epochs"] = len(snaps)
    print(json.dumps(out), flush=True)
    a, scores = orig_select(module, start, end, valid_data, bs, device, known=known)
    return a, scores


orig_fit_head = est_mod.fit_head_on_features


def fit_head_spy(module, enc, y_part, *args, **kw):
    state.setdefault("enc_train", enc)  # the first call is the probe's: the training part
    state.setdefault("y_train", y_part)
    return orig_fit_head(module, enc, y_part, *args, **kw)


est_mod.select_interpolation = wrapped
est_mod.fit_head_on_features = fit_head_spy
t0 = time.perf_counter()
clf.fit(X, y)
print(json.dumps({"fit_s": time.perf_counter() - t0, "a": clf.interpolation_, "test_acc": float((clf.predict(Xt) == yt).mean())}))
