"""Part ``group_features``: the token groups as features, beside the frozen embedding, on dev splits.

A cheap test of whether the token groups carry signal the pooled embedding lacks: logistic
regression on the frozen backbone's pooled features alone (``frozen_lr``, the linear probe the
fit starts from), on the token groups' 0/1 indicators alone (``groups_lr``), on both side by side
(``frozen_groups_lr``), and, as the control of the same size, on the embedding beside as many
n-grams chosen by document frequency without looking at the labels (``frozen_freq_lr``). The
groups are the estimator's own (``discover_token_groups`` over the fit texts' tokens, with the
estimator's defaults: ``10 x n_classes`` groups, n-grams up to 3, ``min_count`` lowered for tiny
classes as ``fit`` does); ``_x10`` variants keep ten times as many. What a user would do instead:
TF-IDF LR (``tfidf_lr``), and the embedding beside TF-IDF (``frozen_tfidf_lr``); the majority
class. Nothing is finetuned here: this measures the features, not a fit.

Dev splits from the training sets only: BANKING77 and CLINC150 10-shot samples scored on up to
1,500 training texts not drawn; the drug reviews' 600 training texts in 5 stratified folds
(shuffled with the seed), their accuracy pooled over the folds. One fresh process per
(dataset, seed); one row per variant.
"""

from __future__ import annotations

import time

import numpy as np

from ..common import DRUG_REVIEWS, append_row, how_run, in_fresh_process, peak_memory, train_dev


def _splits(dataset, seed):
    """``[(fit texts, fit labels, dev texts, dev labels)]``: one 10-shot dev split, or 5 folds of the drug reviews."""
    if dataset != "drugreviews":
        return [train_dev(dataset, "10shot", seed, 1500, 0.2)]
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold

    data = pd.read_csv(DRUG_REVIEWS / "train.csv")
    X, y = data["text"].astype(str).tolist(), data["label"].astype(str).to_numpy(dtype=object)
    folds = StratifiedKFold(5, shuffle=True, random_state=seed).split(X, y)
    return [([X[i] for i in a], y[a], [X[i] for i in b], y[b]) for a, b in folds]


def _indicators(sequences, grams):
    """0/1 matrix: does text i hold n-gram j (token ids) anywhere."""
    from scipy import sparse

    index = {g: j for j, g in enumerate(grams)}
    longest = max((len(g) for g in grams), default=1)
    rows, cols = [], []
    for i, seq in enumerate(sequences):
        seen = {index[tuple(seq[p:p + n])] for n in range(1, longest + 1) for p in range(len(seq) - n + 1)
                if tuple(seq[p:p + n]) in index}
        rows += [i] * len(seen)
        cols += sorted(seen)
    return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(sequences), len(grams)))


def _frequent(sequences, n, max_ngram):
    """The ``n`` n-grams (up to ``max_ngram`` tokens) in the most texts: the label-blind control."""
    from collections import Counter

    df = Counter()
    for seq in sequences:
        df.update({tuple(seq[p:p + k]) for k in range(1, max_ngram + 1) for p in range(len(seq) - k + 1)})
    return [g for g, _ in sorted(df.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def one_seed(spec, queue):
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import LabelEncoder

    from sksparseft.model.backbone import load_backbone
    from sksparseft.text.tokens import content_sequences, discover_token_groups, encode

    from ..compare import FrozenEmbeddings

    tokenizer, _, _ = load_backbone(spec["model"])
    special = set(tokenizer.all_special_ids)
    embed = FrozenEmbeddings(spec["model"], max_length=128)
    correct, n_total, n_groups_kept, t0 = {}, 0, {}, time.perf_counter()
    for X, y, Xd, yd in _splits(spec["dataset"], spec["seed"]):
        labels = LabelEncoder().fit(y)
        y_enc, n_classes = labels.transform(y), len(labels.classes_)
        seqs = [s for s, _ in content_sequences(encode(tokenizer, X, 128), special)]
        seqs_d = [s for s, _ in content_sequences(encode(tokenizer, Xd, 128), special)]
        smallest = int(np.bincount(y_enc).min())
        min_count = max(min(3, max(1, smallest // 2)), 1)  # as fit lowers it for tiny classes
        emb, emb_d = embed(X), embed(Xd)
        tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(X)
        feats = {"frozen_lr": (emb, emb_d, 1.0), "tfidf_lr": (tfidf.transform(X), tfidf.transform(Xd), 10.0),
                 "frozen_tfidf_lr": (sparse.hstack([emb, tfidf.transform(X)]).tocsr(),
                                     sparse.hstack([emb_d, tfidf.transform(Xd)]).tocsr(), 1.0)}
        for suffix, factor in (("", 10), ("_x10", 100)):
            groups = discover_token_groups(seqs, y_enc, n_classes, n_groups=factor * n_classes, max_ngram=3,
                                           min_count=min_count, decode=tokenizer.decode)
            grams = [g.token_ids for g in groups]
            n_groups_kept[suffix] = len(grams)
            ind, ind_d = _indicators(seqs, grams), _indicators(seqs_d, grams)
            freq = _frequent(seqs, len(grams), 3)
            fq, fq_d = _indicators(seqs, freq), _indicators(seqs_d, freq)
            feats[f"groups{suffix}_lr"] = (ind, ind_d, 1.0)
            feats[f"frozen_groups{suffix}_lr"] = (sparse.hstack([emb, ind]).tocsr(), sparse.hstack([emb_d, ind_d]).tocsr(), 1.0)
            feats[f"frozen_freq{suffix}_lr"] = (sparse.hstack([emb, fq]).tocsr(), sparse.hstack([emb_d, fq_d]).tocsr(), 1.0)
        majority = labels.classes_[np.bincount(y_enc).argmax()]
        correct["majority"] = correct.get("majority", 0) + int(np.sum(np.asarray(yd) == majority))
        for name, (a, b, c) in feats.items():
            model = LogisticRegression(C=c, max_iter=3000).fit(a, y_enc)
            pred = labels.classes_[model.predict(b)]
            correct[name] = correct.get(name, 0) + int(np.sum(pred == np.asarray(yd)))
        n_total += len(yd)
    rows = [{**spec, "variant": name, "dev_accuracy": hits / n_total, "n_dev": n_total,
             "n_groups": n_groups_kept.get("_x10" if "_x10" in name else "", None) if "groups" in name or "freq" in name
             else None} for name, hits in correct.items()]
    queue.put({"rows": rows, "seconds": time.perf_counter() - t0, **peak_memory(), **how_run()})


def run(cfg, out, args):
    from ..common import MODEL

    for dataset in cfg["datasets"]:
        if args.datasets and dataset not in args.datasets:
            continue
        for seed in [s for s in cfg["seeds"] if not args.seeds or s in args.seeds]:
            spec = {"config": cfg["name"], "dataset": dataset, "seed": seed, "model": MODEL,
                    "split": "5 folds of the training split" if dataset == "drugreviews" else "10-shot dev split"}
            result = in_fresh_process(one_seed, spec)
            if result is None:
                append_row(out, {**spec, "error": "process died", **how_run()})
                continue
            extra = {k: v for k, v in result.items() if k != "rows"}
            for row in result["rows"]:
                append_row(out, {**row, **extra})
                print(f"{dataset} seed {seed} {row['variant']}: {row['dev_accuracy']:.4f}", flush=True)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit("run through: python -m benchmarks.run --config group_features")
