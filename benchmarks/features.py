"""Part ``features``: unknown-intent rejection on CLINC150 and multi-label messages built from BANKING77.

``oos``: the estimator with ``unknown_label="oos"`` (threshold "auto": 95% of in-scope
validation texts accepted) against logistic regression on frozen embeddings with the same
rule (fitted on 90% of the training texts, threshold from the held-out 10%, refitted on all).
Scored on CLINC150's test split: in-scope accuracy (a rejected in-scope query is an error),
out-of-scope recall (share of the 1,000 out-of-scope test queries rejected). ``10shot`` draws
10 in-scope texts per intent and no out-of-scope text; ``full`` trains on the 15,000 in-scope
texts and the 100 labelled out-of-scope ones (class ``oos``), as Larson et al. (2019) did.

``multilabel``: messages of one or two BANKING77 requests, built so that every source sentence
is in one text only. Training: the 10-shot sample (770 texts), each intent's 10 split at random
into 5 that stay alone and 5 that go into two-request messages: that pool shuffled and joined two
by two with ". " (192 messages; a pair of one intent trades a partner with another pair), each
labelled with both. No sentence is alone in one training text and inside a pair in another, so
the estimator's own validation split (early stopping, the blend, the "auto" thresholds) never
holds a sentence that it trained on. Test: the test split less the texts that also occur in the
training split (case and end punctuation aside) and repeats, shuffled with the seed, half alone
and the other half joined in pairs the same way. The estimator with an indicator ``y`` against
one-vs-rest logistic regression on frozen embeddings, both at threshold 0.5 (and the estimator
with ``multilabel_threshold="auto"``). One fresh process per fit; rows append as they come.
"""

from __future__ import annotations

import time

import numpy as np

from .common import CLINC, MODEL, append_row, how_run, in_fresh_process, load, peak_memory


def oos_data(regime, seed):
    """``(X, y, X_test_in, y_test_in, X_test_oos)`` of CLINC150."""
    import json

    X, y, Xt, yt, oos = load("clinc150", regime, seed)
    if regime == "full":
        data = json.loads(CLINC.read_text())
        X = X + [t for t, _ in data["oos_train"]]
        y = np.concatenate([y, np.asarray(["oos"] * len(data["oos_train"]), dtype=object)])
    return X, y, Xt, yt, oos["test_oos"]


def oos_dev():
    """CLINC150's validation split: ``(in-scope texts, their labels, out-of-scope texts)`` (never trained on)."""
    import json

    data = json.loads(CLINC.read_text())
    return ([t for t, _ in data["val"]], np.asarray([c for _, c in data["val"]], dtype=object),
            [t for t, _ in data["oos_val"]])


def _key(text):
    """A sentence as the pairing compares it: lower case, single spaces, no end punctuation."""
    return " ".join(str(text).lower().rstrip(".?! ").split())


def _pairs(labels, rng):
    """Index pairs of a random pairing of ``labels``, of two different labels each.

    The items are shuffled and taken two by two (an odd one out is left over); a pair of one
    label swaps its second item with that of another pair where neither pair ends up with one
    label (it is dropped only when there is no such pair).
    """
    order = rng.permutation(len(labels))
    pairs = [[int(a), int(b)] for a, b in zip(order[0::2], order[1::2])]
    for i, p in enumerate(pairs):
        if labels[p[0]] != labels[p[1]]:
            continue
        for j in rng.permutation(len(pairs)):
            q = pairs[j]
            if j != i and labels[q[1]] != labels[p[0]] and labels[p[1]] != labels[q[0]]:
                p[1], q[1] = q[1], p[1]
                break
    return [(a, b) for a, b in pairs if labels[a] != labels[b]]


def _compose(texts, labels, alone, paired, rng):
    """``(messages, label sets, sources)``: ``alone`` as they are, then ``paired`` joined two by two.

    ``sources`` holds, per message, the keys of the sentences it was built from.
    """
    out = [texts[i] for i in alone]
    sets = [{labels[i]} for i in alone]
    sources = [(_key(texts[i]),) for i in alone]
    for a, b in _pairs([labels[i] for i in paired], rng):
        a, b = paired[a], paired[b]
        out.append(f"{texts[a].rstrip('.?! ')}. {texts[b]}")
        sets.append({labels[a], labels[b]})
        sources.append((_key(texts[a]), _key(texts[b])))
    return out, sets, sources


def _first_of_each(texts, idx, taken=()):
    """The indices of ``idx`` whose sentence is not in ``taken`` and not a repeat of an earlier one."""
    seen, keep = set(taken), []
    for i in idx:
        k = _key(texts[i])
        if k not in seen:
            seen.add(k)
            keep.append(i)
    return keep


def multilabel_texts(X, y, Xt, yt, seed, exclude=()):
    """Training and test messages of one or two requests, every source sentence in one message only.

    Per label, the training texts are shuffled and split in half: the first half stay alone, the
    second go into two-request messages. The test texts, less those in ``X`` or ``exclude`` and
    less repeats, are shuffled, half left alone and half paired. Returns ``(train, train_sets,
    train_sources, test, test_sets, test_sources)`` (label sets, and per message the keys of its
    source sentences).
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=object)
    keep = _first_of_each(X, range(len(X)))
    alone, paired = [], []
    for c in sorted(set(y[keep])):
        mine = [keep[i] for i in rng.permutation(len(keep)) if y[keep[i]] == c]
        alone += mine[:(len(mine) + 1) // 2]
        paired += mine[(len(mine) + 1) // 2:]
    train = _compose(X, y, sorted(alone), sorted(paired), rng)
    usable = _first_of_each(Xt, range(len(Xt)), {_key(t) for t in list(X) + list(exclude)})
    order = [usable[i] for i in rng.permutation(len(usable))]
    half = len(order) // 2
    test = _compose(Xt, list(yt), order[:half], order[half:], rng)
    return (*train, *test)


def multilabel_data(seed):
    """``(X, Y, X_test, Y_test, names)`` of the two-request BANKING77 messages (``Y``: 0/1 indicators)."""
    from sksparseft.datasets import load_banking77

    X, y, Xt, yt, _ = load("banking77", "10shot", seed)
    everything, _ = load_banking77("train", return_X_y=True)
    names = sorted(set(y))
    train, train_sets, _, test, test_sets, _ = multilabel_texts(X, y, Xt, yt, seed, exclude=everything)

    def indicator(sets):
        return np.asarray([[int(n in s) for n in names] for s in sets], dtype=np.int64)

    return train, indicator(train_sets), test, indicator(test_sets), names


def _strategy(spec):
    """The estimator's own default strategy for method "default", else the named one."""
    return {} if spec["method"] == "default" else {"strategy": spec["method"]}


def _frozen_features():
    from .compare import FrozenEmbeddings

    return FrozenEmbeddings(MODEL)


def one_oos(spec, queue):
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from sksparseft import TokenSparseClassifier
    from sksparseft.fit.rejection import best_known, conformal_threshold

    X, y, Xt, yt, Xo = oos_data(spec["regime"], spec["seed"])
    Xd, yd, Xdo = oos_dev()
    torch.manual_seed(spec["seed"])
    row = dict(spec)
    t0 = time.perf_counter()
    if spec["method"] == "frozen_lr":
        # The estimator's rule: out-of-fold best-class probabilities of every in-scope training
        # text (5 stratified folds), threshold at their conformal 95% quantile.
        embed = _frozen_features()
        F = embed(X)
        folds = StratifiedKFold(min(5, int(np.unique(y, return_counts=True)[1].min())), shuffle=True,
                                random_state=spec["seed"])
        oof = cross_val_predict(LogisticRegression(C=1, max_iter=3000), F, y, cv=folds, method="predict_proba")
        unknown = np.flatnonzero(np.unique(y) == "oos")  # columns follow the sorted labels
        thr = conformal_threshold(best_known(oof[y != "oos"], unknown))
        model = LogisticRegression(C=1, max_iter=3000).fit(F, y)
        classes = model.classes_

        def predict(texts):
            proba = model.predict_proba(embed(texts))
            labels = classes[proba.argmax(axis=1)].astype(object)
            labels[(best_known(proba, unknown) < thr) | (labels == "oos")] = "oos"
            return labels
    else:
        clf = TokenSparseClassifier(model=MODEL, random_state=spec["seed"], unknown_label="oos",
                                    **_strategy(spec), **spec.get("params", {})).fit(X, y)
        thr, predict = clf.unknown_threshold_, clf.predict
        row.update(epochs=len(clf.history_) - 1, interpolation=clf.interpolation_, stages=clf.fit_stages_,
                   contrastive_epochs=clf.contrastive_epochs)
    row["fit_s"] = time.perf_counter() - t0
    pred_in, pred_oos = predict(Xt), predict(Xo)
    dev_in, dev_oos = predict(Xd), predict(Xdo)
    row.update(threshold=float(thr), rule="out_of_fold_conformal", inscope_accuracy=float((pred_in == yt).mean()),
               inscope_rejected=float((pred_in == "oos").mean()), oos_recall=float((pred_oos == "oos").mean()),
               dev_inscope_accuracy=float((dev_in == yd).mean()), dev_inscope_rejected=float((dev_in == "oos").mean()),
               dev_oos_recall=float((dev_oos == "oos").mean()), n_dev_in=len(Xd), n_dev_oos=len(Xdo),
               n_train=len(X), n_test_in=len(Xt), n_test_oos=len(Xo), **peak_memory(), **how_run())
    queue.put(row)


def one_multilabel(spec, queue):
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.multiclass import OneVsRestClassifier

    from sksparseft import TokenSparseClassifier

    X, Y, Xt, Yt, names = multilabel_data(spec["seed"])
    torch.manual_seed(spec["seed"])
    row = dict(spec)
    t0 = time.perf_counter()
    if spec["method"] == "frozen_ovr_lr":
        embed = _frozen_features()
        model = OneVsRestClassifier(LogisticRegression(C=1, max_iter=3000)).fit(embed(X), Y)

        def predict(texts):
            return (model.predict_proba(embed(texts)) >= 0.5).astype(int)
    else:
        clf = TokenSparseClassifier(model=MODEL, random_state=spec["seed"], **_strategy(spec),
                                    **spec.get("params", {})).fit(X, Y)
        predict = clf.predict
        row.update(epochs=len(clf.history_) - 1, interpolation=clf.interpolation_, stages=clf.fit_stages_,
                   contrastive_epochs=clf.contrastive_epochs, thresholds_mean=float(np.mean(clf.thresholds_)))
    row["fit_s"] = time.perf_counter() - t0
    pred = predict(Xt)
    two = Yt.sum(axis=1) == 2
    row.update(micro_f1=float(f1_score(Yt, pred, average="micro", zero_division=0)),
               macro_f1=float(f1_score(Yt, pred, average="macro", zero_division=0)),
               subset_accuracy=float(accuracy_score(Yt, pred)),
               subset_accuracy_pairs=float(accuracy_score(Yt[two], pred[two])),
               n_train=len(X), n_train_pairs=int((Y.sum(axis=1) == 2).sum()), n_test=len(Xt),
               n_test_pairs=int(two.sum()), n_labels=len(names), **peak_memory(), **how_run())
    queue.put(row)


def run(cfg, out, args):
    target = {"oos": one_oos, "multilabel": one_multilabel}[cfg["task"]]
    for regime in cfg["regimes"]:
        for seed in [s for s in cfg["seeds"] if not args.seeds or s in args.seeds]:
            for name, variant in cfg["variants"].items():
                if args.only and name not in args.only:
                    continue
                if regime in variant.get("skip_regimes", ()):
                    continue
                spec = {"config": cfg["name"], "task": cfg["task"], "variant": name, "regime": regime, "seed": seed,
                        "method": variant["method"], "params": variant.get("params", {})}
                row = in_fresh_process(target, spec)
                if row is None:
                    row = {**spec, "error": "process died", **how_run()}
                append_row(out, row)
                shown = {k: round(v, 4) for k, v in row.items()
                         if k in ("inscope_accuracy", "oos_recall", "micro_f1", "macro_f1", "fit_s")}
                print(f"{cfg['name']} {regime} seed {seed} {name}: {shown or row.get('error')}", flush=True)
