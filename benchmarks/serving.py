"""Part ``serving``: one loaded model behind 1, 2, 4 and 8 client threads.

A model is fitted on a BANKING77 sample, saved and loaded (what a server holds). Each setting
(client threads x texts per call x torch threads) runs in a fresh process: every client calls
``predict`` for ``seconds`` on BANKING77 test texts, single texts or batches; a row holds the
texts per second of all clients together and the p50/p99 latency of one call.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from .common import (
    MODEL,
    append_row,
    banking77_sample,
    how_run,
    in_fresh_process,
    peak_memory,
)


def _fit_and_save(path, n_train, seed):
    from sksparseft import TokenSparseClassifier

    X, y = banking77_sample(n_train, seed)
    # One short epoch: serving speed depends on the backbone, not on how long the fit trained.
    TokenSparseClassifier(MODEL, max_epochs=1, contrastive_epochs=0, random_state=seed).fit(X, y).save(path)


def one_setting(spec, queue):
    import os

    import torch

    from sksparseft import TokenSparseClassifier
    from sksparseft.datasets import load_banking77

    torch.set_num_threads(os.cpu_count() if spec["torch_threads"] == "all" else spec["torch_threads"])
    clf = TokenSparseClassifier.load(spec["model_file"])
    texts, _ = load_banking77("test", return_X_y=True)
    per_call = spec["texts_per_call"]
    clf.predict(texts[:64])  # warm-up: first-call allocations are not serving
    latencies = [[] for _ in range(spec["clients"])]
    start = threading.Barrier(spec["clients"] + 1)
    stop = time.perf_counter() + 10**9

    def client(k):
        rng = np.random.default_rng(k)
        start.wait()
        while time.perf_counter() < stop:
            i = int(rng.integers(len(texts) - per_call))
            t0 = time.perf_counter()
            clf.predict(texts[i:i + per_call])
            latencies[k].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(spec["clients"])]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    stop = t0 + spec["seconds"]
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    lat = np.concatenate([np.asarray(v) for v in latencies]) * 1000
    queue.put({**spec, "calls": len(lat), "texts_per_s": len(lat) * per_call / elapsed,
               "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
               **peak_memory(), **how_run()})


def run(cfg, out, args):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        model_file = str(Path(tmp) / "model.safetensors")
        _fit_and_save(model_file, cfg["n_train"], 0)
        for torch_threads in cfg["torch_threads"]:
            for per_call in cfg["texts_per_call"]:
                for clients in cfg["clients"]:
                    spec = {"config": cfg["name"], "model": MODEL, "model_file": model_file, "clients": clients,
                            "texts_per_call": per_call, "torch_threads": torch_threads, "seconds": cfg["seconds"],
                            "n_train": cfg["n_train"]}
                    row = in_fresh_process(one_setting, spec)
                    if row is None:
                        row = {**spec, "error": "process died", **how_run()}
                    row.pop("model_file", None)
                    append_row(out, row)
                    print(f"serving: {clients} clients x {per_call} texts, torch threads {torch_threads}: "
                          + (f"{row['texts_per_s']:.0f} texts/s, p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms"
                             if "texts_per_s" in row else row["error"]), flush=True)
