"""Part ``compare``: fit one method on one dataset, regime and seed; score it on the test split.

Methods are the strategies of TokenSparseClassifier and the references a user would pick
instead: ``frozen_lr`` (logistic regression on the backbone's frozen mean-pooled embeddings)
and ``tfidf_lr`` (word and bigram TF-IDF, logistic regression).
"""

from __future__ import annotations

import time

import numpy as np

from .common import MODEL, how_run, load, peak_memory

REFERENCES = ("tfidf_lr", "frozen_lr")


class FrozenEmbeddings:
    """Mean-pooled features of the backbone, unchanged (the transform of the ``frozen_lr`` reference)."""

    def __init__(self, model=MODEL, max_length=128):
        self.model, self.max_length = model, max_length
        self._parts = None

    def __call__(self, texts):
        import torch

        from sksparseft.backbone import load_backbone, pool
        from sksparseft.batching import length_sorted_batches, to_batch
        from sksparseft.devices import resolve_device
        from sksparseft.tokens import encode

        if self._parts is None:
            tokenizer, encoder, _ = load_backbone(self.model)
            device = resolve_device("auto")
            self._parts = (tokenizer, encoder.to(device).eval(), device)
        tokenizer, encoder, device = self._parts
        enc = encode(tokenizer, list(texts), self.max_length)
        out = np.empty((len(texts), encoder.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for rows in length_sorted_batches(enc, 128):
                b = to_batch(enc, rows, device)
                hidden = encoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
                out[rows] = pool(hidden, b["attention_mask"], "mean").float().cpu().numpy()
        return out


def reference(name, X, y):
    """A fitted reference pipeline."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    if name == "tfidf_lr":
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        return make_pipeline(vectorizer, LogisticRegression(C=10, max_iter=3000)).fit(X, y)
    if name == "frozen_lr":
        from sklearn.preprocessing import FunctionTransformer

        embed = FunctionTransformer(FrozenEmbeddings())
        return make_pipeline(embed, LogisticRegression(C=1, max_iter=3000)).fit(X, y)
    raise ValueError(f"unknown reference {name!r}; known: {REFERENCES}")


def one_run(spec, queue):
    """Fit and evaluate one (dataset, regime, method, seed) in this process; put a result row."""
    import torch
    from sklearn.metrics import accuracy_score, f1_score

    from sksparseft import TokenSparseClassifier

    X, y, Xt, yt, oos = load(spec["dataset"], spec["regime"], spec["seed"])
    torch.manual_seed(spec["seed"])
    t0 = time.perf_counter()
    row = dict(spec)
    if spec["method"] in REFERENCES:
        model = reference(spec["method"], X, y)
        row["trainable_params"] = int(model[-1].coef_.size + model[-1].intercept_.size)
    else:
        params = {"model": MODEL, **spec.get("params", {})}
        model = TokenSparseClassifier(strategy=spec["method"], random_state=spec["seed"], **params)
        model.fit(X, y)
        row.update(trainable_params=int(model.n_trainable_params_), epochs=len(model.history_) - 1,
                   finetuned=bool(model.finetuned_), interpolation=model.interpolation_,
                   learning_rate=model.learning_rate_, refit_head=model.refit_head, stages=model.fit_stages_)
    row["fit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    proba = model.predict_proba(Xt)
    row["predict_s"] = time.perf_counter() - t0
    pred = model.classes_[proba.argmax(axis=1)]
    row["accuracy"] = float(accuracy_score(yt, pred))
    row["macro_f1"] = float(f1_score(yt, pred, average="macro"))
    if oos is not None:
        # Reject when the top probability is below the 5th percentile of in-scope validation
        # queries (95% of in-scope queries accepted); report recall on out-of-scope test queries.
        thr = float(np.quantile(model.predict_proba(oos["val_in"]).max(axis=1), 0.05))
        row["oos_threshold"] = thr
        row["oos_recall"] = float((model.predict_proba(oos["test_oos"]).max(axis=1) < thr).mean())
        row["inscope_accept"] = float((proba.max(axis=1) >= thr).mean())
    row.update(n_train=len(X), n_test=len(Xt), model=spec.get("params", {}).get("model", MODEL), **peak_memory(), **how_run())
    queue.put(row)
