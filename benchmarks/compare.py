"""Part ``compare``: fit one method on one dataset, regime and seed; score it on the test split.

Methods are the strategies of TokenSparseClassifier and the references a user would pick
instead: ``frozen_lr`` (logistic regression on the backbone's frozen mean-pooled embeddings),
``tfidf_lr`` (word and bigram TF-IDF, logistic regression), and the peers ``setfit`` and ``fastfit``
at their documented recipes on the same backbone files, each in its own environment
(:mod:`benchmarks.peers`).
"""

from __future__ import annotations

import time

import numpy as np

from .common import MODEL, how_run, load, peak_memory
from .fingerprint import fingerprint

REFERENCES = ("tfidf_lr", "frozen_lr", "setfit")
#: Every reference a config may name: the default ones and frozen_lr_cv (named where a config asks for it, so
#: the configs whose rows were written before it keep their fits).
ALL_REFERENCES = REFERENCES + ("frozen_lr_cv", "fastfit")
#: What any classifier must beat, fitted only where a config names it (imbalanced tasks).
BASELINES = ("majority",)
#: frozen_lr_cv's grid of C (inverse regularisation), chosen by cross-validation
FROZEN_LR_CS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


class FrozenEmbeddings:
    """Pooled features of the backbone, unchanged (the transform of the ``frozen_lr`` reference).

    The features are the estimator's own (``ClassifierModule.features`` through ``run_inference``),
    pooled as the backbone was trained (mean for MiniLM, the last token for a decoder); the head
    the module carries is never used.
    """

    def __init__(self, model=MODEL, max_length=128):
        self.model, self.max_length = model, max_length
        self._parts = None

    def __call__(self, texts):
        from sksparseft.model.backbone import default_pooling, load_backbone
        from sksparseft.model.devices import resolve_device
        from sksparseft.model.module import ClassifierModule
        from sksparseft.text.tokens import encode
        from sksparseft.model.inference import run_inference

        if self._parts is None:
            tokenizer, encoder, path = load_backbone(self.model)
            device = resolve_device("auto")
            pooling = default_pooling(path, encoder)
            self._parts = (tokenizer, ClassifierModule(encoder, 1, pooling=pooling).to(device), device)
        tokenizer, module, device = self._parts
        return run_inference(module, encode(tokenizer, list(texts), self.max_length), 128, device, what="features")


def reference(name, X, y, seed=0, model=MODEL):
    """A fitted reference model (``predict_proba`` columns follow its ``classes_``); ``model``: its backbone."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    if name == "tfidf_lr":
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        return make_pipeline(vectorizer, LogisticRegression(C=10, max_iter=3000)).fit(X, y)
    if name == "frozen_lr":
        from sklearn.preprocessing import FunctionTransformer

        embed = FunctionTransformer(FrozenEmbeddings(model))
        return make_pipeline(embed, LogisticRegression(C=1, max_iter=3000)).fit(X, y)
    if name == "frozen_lr_cv":
        # What a careful user fits on frozen embeddings: unit-length sentence vectors, C chosen by
        # stratified 5-fold cross-validation on the training texts (fewer folds where a class has fewer texts).
        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.model_selection import StratifiedKFold
        from sklearn.preprocessing import FunctionTransformer, Normalizer

        folds = int(min(5, np.unique(y, return_counts=True)[1].min()))
        cv = StratifiedKFold(max(folds, 2), shuffle=True, random_state=seed)
        lr = LogisticRegressionCV(Cs=list(FROZEN_LR_CS), cv=cv, max_iter=3000)
        return make_pipeline(FunctionTransformer(FrozenEmbeddings(model)), Normalizer(), lr).fit(X, y)
    if name == "majority":
        from sklearn.dummy import DummyClassifier

        return DummyClassifier(strategy="most_frequent").fit(np.zeros((len(X), 1)), y)
    if name in ("setfit", "fastfit"):
        from .peers import PeerReference

        return PeerReference(name, model, seed=seed).fit(X, y)
    raise ValueError(f"unknown reference {name!r}; known: {ALL_REFERENCES + BASELINES}")


def _trainable(model):
    if hasattr(model, "n_trainable_params"):  # a peer
        return model.n_trainable_params
    return int(model[-1].coef_.size + model[-1].intercept_.size)


def validation_trace(model):
    """What the fit saw on its validation part, epoch by epoch: row 0 of ``history_`` is the probe
    where training started (with the frozen backbone's probe beside it), then each cross-entropy
    epoch; and the interpolation's points. Enough to replay a stopping rule from the rows."""
    history = model.history_
    trace = {"valid_acc": [None if row.get("valid_acc") is None else float(row["valid_acc"]) for row in history],
             "interpolation_scores": {str(a): [float(s) for s in v] for a, v in model.interpolation_scores_.items()}}
    if history and "frozen_probe_valid_acc" in history[0]:
        trace["frozen_probe_valid_acc"] = float(history[0]["frozen_probe_valid_acc"])
    if getattr(model, "finetune_plan_", None):  # the epochs the fit planned from its data (0.8.0 on)
        trace["finetune_plan"] = dict(model.finetune_plan_)
    return trace


def _precision_used(model):
    """What the fit's training passes computed in: ``precision`` resolved as the fit resolved it."""
    from sksparseft.model.devices import resolve_precision
    from sksparseft.strategies import from_description

    dtype = resolve_precision(model.precision, model.device_, from_description(model.strategy_).bf16_on_cpu())
    return "float32" if dtype is None else "bfloat16"


def one_run(spec, queue):
    """Fit and evaluate one (dataset, regime, method, seed) in this process; put a result row."""
    import torch
    from sklearn.metrics import accuracy_score, f1_score

    from sksparseft import TokenSparseClassifier

    X, y, Xt, yt, oos = load(spec["dataset"], spec["regime"], spec["seed"])
    torch.manual_seed(spec["seed"])
    t0 = time.perf_counter()
    row = dict(spec, fingerprint=fingerprint(spec["method"]))
    if spec["method"] in ALL_REFERENCES:
        model = reference(spec["method"], X, y, seed=spec["seed"], model=spec.get("params", {}).get("model", MODEL))
        row["trainable_params"] = _trainable(model)
        if hasattr(getattr(model, "steps", [[None]])[-1][-1], "C_"):  # frozen_lr_cv: the C it chose
            row["C"] = float(model.steps[-1][-1].C_[0])
    else:
        params = {"model": MODEL, **spec.get("params", {})}
        model = TokenSparseClassifier(strategy=spec.get("strategy", spec["method"]), random_state=spec["seed"], **params)
        model.fit(X, y)
        row.update(trainable_params=int(model.n_trainable_params_), epochs=len(model.history_) - 1,
                   finetuned=bool(model.finetuned_), interpolation=model.interpolation_,
                   learning_rate=model.learning_rate_, refit_head=model.refit_head,
                   contrastive_epochs=model.contrastive_epochs, stages=model.fit_stages_,
                   precision_used=_precision_used(model), **validation_trace(model))
    row["fit_s"] = time.perf_counter() - t0
    if hasattr(model, "fit_s_"):  # a peer: the seconds of its fit in its own process, its start-up aside
        row.update(fit_s=model.fit_s_, peer_versions=model.versions_)
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
    if hasattr(model, "close"):
        model.close()
    row.update(n_train=len(X), n_test=len(Xt), model=spec.get("params", {}).get("model", MODEL), **peak_memory(), **how_run())
    queue.put(row)
