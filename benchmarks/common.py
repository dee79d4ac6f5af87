"""What every benchmark part shares: paths, the datasets, how a run is described, one process per fit."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("SKSPARSEFT_BENCH_RESULTS") or ROOT / "benchmarks" / "results")
CLINC = Path(os.environ.get("CLINC150_JSON") or ROOT.parent / "shared" / "data" / "clinc150" / "data_full.json")
DRUG_REVIEWS = Path(os.environ.get("DRUG_REVIEWS_DIR") or ROOT.parent / "shared" / "data" / "drugreviews")

# The backbone when a config does not name one (a local copy on machines without the package).
MODEL = os.environ.get("SKSPARSEFT_BENCH_MODEL", "all-MiniLM-L6-v2")
DATASETS = ("banking77", "clinc150")
#: Every dataset ``load`` reads: the two intent sets and the drug reviews (a config names them).
ALL_DATASETS = DATASETS + ("drugreviews",)


def load(dataset, regime, seed):
    """``(X, y, X_test, y_test, oos)``: train and test texts and labels (+ out-of-scope texts for CLINC150).

    ``regime="<k>shot"`` (``"10shot"``, ``"16shot"``) draws k training texts per class with
    ``seed``; ``"full"`` keeps them all.
    """
    if dataset == "banking77":
        from sksparseft.datasets import load_banking77

        X, y = load_banking77("train", return_X_y=True)
        Xt, yt = load_banking77("test", return_X_y=True)
        oos = None
    elif dataset == "clinc150":
        if not CLINC.is_file():
            raise FileNotFoundError(f"CLINC150 is read from {CLINC}: set CLINC150_JSON to its data_full.json")
        data = json.loads(CLINC.read_text())
        X, y = [t for t, _ in data["train"]], [c for _, c in data["train"]]
        Xt, yt = [t for t, _ in data["test"]], [c for _, c in data["test"]]
        oos = {"val_in": [t for t, _ in data["val"]], "val_oos": [t for t, _ in data["oos_val"]],
               "test_oos": [t for t, _ in data["oos_test"]]}
    elif dataset == "drugreviews":  # the rating (negative / neutral / positive) of a patient's review
        import pandas as pd

        if not (DRUG_REVIEWS / "train.csv").is_file():
            raise FileNotFoundError(f"the drug reviews are read from {DRUG_REVIEWS}: set DRUG_REVIEWS_DIR")
        train, test = (pd.read_csv(DRUG_REVIEWS / f"{part}.csv") for part in ("train", "test"))
        X, y = train["text"].astype(str).tolist(), train["label"].astype(str).tolist()
        Xt, yt = test["text"].astype(str).tolist(), test["label"].astype(str).tolist()
        oos = None
    else:
        raise ValueError(f"unknown dataset {dataset!r}; known: {ALL_DATASETS}")
    y = np.asarray(y, dtype=object)
    if regime != "full":
        shots = int(regime.removesuffix("shot"))
        rng = np.random.default_rng(seed)
        idx = np.concatenate([rng.choice(np.flatnonzero(y == c), shots, replace=False) for c in sorted(set(y))])
        X, y = [X[i] for i in idx], y[idx]
    return list(X), y, list(Xt), np.asarray(yt, dtype=object), oos


def train_dev(dataset, regime, seed, dev_size, dev_fraction):
    """(fit texts, fit labels, dev texts, dev labels), all from the official training split."""
    X_all, y_all, _, _, _ = load(dataset, "full", seed)
    rng = np.random.default_rng(1000 + seed)
    if regime == "10shot":
        X, y, _, _, _ = load(dataset, "10shot", seed)
        taken = set(X)
        rest = np.array([i for i, t in enumerate(X_all) if t not in taken])
        dev = rng.choice(rest, min(dev_size, len(rest)), replace=False)
        return X, y, [X_all[i] for i in dev], y_all[dev]
    dev = np.concatenate([
        rng.choice(idx, max(1, int(round(dev_fraction * len(idx)))), replace=False)
        for idx in (np.flatnonzero(y_all == c) for c in sorted(set(y_all)))
    ])
    keep = np.setdiff1d(np.arange(len(X_all)), dev)
    return [X_all[i] for i in keep], y_all[keep], [X_all[i] for i in dev], y_all[dev]


def banking77_sample(n, seed):
    """``n`` BANKING77 training texts drawn at random with ``seed`` (the cost and export parts' data)."""
    from sksparseft.datasets import load_banking77

    X, y = load_banking77("train", return_X_y=True)
    idx = np.random.default_rng(seed).permutation(len(X))[:n]
    return [X[i] for i in idx], np.asarray(y)[idx]


#: The libraries besides torch whose versions can move a fit's floats (kernels, tokenizers, attention code).
LIBRARIES = ("transformers", "tokenizers", "numpy", "scikit-learn", "skorch", "accelerate", "peft")


def _library_versions():
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def how_run():
    """The version, date, device, torch, other libraries and machine that a result row was measured with."""
    import torch

    import sksparseft
    from sksparseft.model.devices import cpu_has_native_bf16

    return {
        "version": sksparseft.__version__, "date": time.strftime("%Y-%m-%d"), "libraries": _library_versions(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "torch": torch.__version__, "machine": platform.machine(), "threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_native_bf16(),
    }


def append_row(path, row):
    """Append one JSON row as soon as it exists: a crash later keeps what was measured."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")


def in_fresh_process(target, spec):
    """``target(spec, queue)`` in a spawned process (its peak memory is its own); its row, or None if it died."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(spec, queue))
    proc.start()
    while True:
        try:
            row = queue.get(timeout=5)
            proc.join()
            return row
        except queue_mod.Empty:
            if not proc.is_alive():
                print(f"the run's process died (exit code {proc.exitcode}): {spec}", flush=True)
                return None


def peak_memory():
    """Peak RSS of this process (and the CUDA peak on a GPU), in MiB."""
    import resource

    import torch

    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def encode_labelled(state, X, y, max_length):
    """Texts encoded as this fit encodes them (its own tokenizer) and their labels as class indices."""
    from sksparseft.text.tokens import encode

    return encode(state.tokenizer, list(X), max_length), np.searchsorted(state.classes, np.asarray(y, dtype=object))
