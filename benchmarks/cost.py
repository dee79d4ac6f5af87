"""Training cost and inference speed of token_sparse against full finetuning (issue: cost).

    python benchmarks/cost.py                      # CPU defaults: 3000 texts, 2 epochs, n = 1k..10k
    python benchmarks/cost.py --n-train 9000 --epochs 3 --device cuda
    python benchmarks/cost.py --parts ratio predict

Parts (each fit runs in a fresh process so that its peak memory is its own):

- ``ratio``: ``full``, ``token_sparse``, ``token_sparse`` on the plain path (delta added
  onto a copy of every weight, dense weight gradients) and ``token_sparse`` restricted to
  blocks 3+ (``min_layer=3``: the backward pass stops there; the frozen blocks 0-2 run once
  per text, and once per epoch with ``cache_frozen=False``) on the same BANKING77 texts,
  same epochs (early stopping off), same seed: fit wall time, training-stage time,
  optimizer state bytes, peak RSS (and CUDA peak), and test accuracy on the BANKING77
  test set (``--variants`` picks a subset).
- ``scaling``: ``token_sparse`` fit time and peak memory for 1k, 2k, 5k, 10k training texts
  (one epoch), and token-group discovery time against the number of tokens.
- ``predict``: ``predict`` throughput on the BANKING77 test set against the transformers
  ``pipeline("text-classification")`` on the same finetuned model, and their agreement.

Results append to ``benchmarks/results/cost_<device>.jsonl``; the script prints a summary.
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
RESULTS = ROOT / "benchmarks" / "results"


# name: (strategy, plain path, strategy_options)
VARIANTS = {
    "full": ("full", False, None),
    "token_sparse": ("token_sparse", False, None),
    "token_sparse_plain": ("token_sparse", True, None),
    "min_layer3": ("token_sparse", False, {"min_layer": 3, "cache_frozen": True}),
    "min_layer3_uncached": ("token_sparse", False, {"min_layer": 3, "cache_frozen": False}),
}


def _data(n, seed):
    from sksparseft.datasets import load_banking77

    X, y = load_banking77("train", return_X_y=True)
    idx = np.random.default_rng(seed).permutation(len(X))[:n]
    return [X[i] for i in idx], np.asarray(y)[idx]


def _peaks(device):
    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.startswith("cuda"):
        import torch

        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def fit_one(spec, queue):
    """One timed fit in this process; puts a result row on ``queue``."""

    import torch
    from skorch.callbacks import Callback

    import sksparseft.estimator as est
    from sksparseft import TokenSparseClassifier

    torch.set_num_threads(spec["threads"])
    if spec.get("plain_path"):
        # Force the plain path whatever the estimator passes (it picks the path by device).
        module_class = est.ClassifierModule
        est.ClassifierModule = lambda *a, **k: module_class(*a, **{**k, "sparse_backward": False})

    seen = {}

    class OptimizerState(Callback):
        """Bytes the optimizer holds (AdamW: two moments per trainable value)."""

        def on_train_end(self, net, **kwargs):
            seen["optimizer_state_bytes"] = int(sum(
                t.numel() * t.element_size()
                for state in net.optimizer_.state.values() for t in state.values() if torch.is_tensor(t) and t.dim()
            ))

    X, y = _data(spec["n_train"], spec["seed"])
    clf = TokenSparseClassifier(
        spec["model"], strategy=spec["strategy"], strategy_options=spec.get("strategy_options"), max_epochs=spec["epochs"], patience=spec["epochs"] + 1,
        device=spec["device"], random_state=spec["seed"], callbacks=[("optimizer_state", OptimizerState())],
    )
    if spec["device"].startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    clf.fit(X, y)
    peaks = _peaks(spec["device"])  # of the fit, before the accuracy check below
    from sksparseft.datasets import load_banking77

    Xt, yt = load_banking77("test", return_X_y=True)
    row = dict(spec, fit_s=clf.fit_time_, stages=clf.fit_stages_, trainable_params=int(clf.n_trainable_params_),
               test_accuracy=float(clf.score(Xt, yt)),
               sparse_backward=bool(clf.module_.sparse_backward),
               epochs_run=len(clf.history_) - 1, **seen, **peaks)
    queue.put(row)


def token_group_timing(sizes, seed, model="all-MiniLM-L6-v2"):
    """Token-group discovery time against the number of tokens it reads."""
    from sksparseft.backbone import load_backbone
    from sksparseft.tokens import content_sequences, discover_token_groups, encode

    tok, _, _ = load_backbone(model)
    rows = []
    for n in sizes:
        X, y = _data(n, seed)
        classes, y_enc = np.unique(y, return_inverse=True)
        enc = encode(tok, X, 128)
        seqs = [s for s, _ in content_sequences(enc, set(tok.all_special_ids))]
        times = []
        for _ in range(5):  # median of 5: one call is short enough for a GC pause to double it
            t0 = time.perf_counter()
            discover_token_groups(seqs, y_enc, len(classes), n_groups=10 * len(classes), max_ngram=3, min_count=3,
                                  decode=tok.decode)
            times.append(time.perf_counter() - t0)
        rows.append({"part": "token_groups", "n_train": n, "n_tokens": int(sum(len(s) for s in seqs)),
                     "seconds": float(np.median(times)), "seconds_min": min(times), "seconds_max": max(times)})
    return rows


def predict_speed(spec):
    """predict() against a transformers text-classification pipeline on the same finetuned model."""
    import torch
    import transformers
    from transformers import PreTrainedModel, pipeline
    from transformers.modeling_outputs import SequenceClassifierOutput

    from sksparseft import TokenSparseClassifier
    from sksparseft.backbone import pool
    from sksparseft.datasets import load_banking77

    torch.set_num_threads(spec["threads"])
    X, y = _data(spec["n_train"], spec["seed"])
    clf = TokenSparseClassifier(spec["model"], max_epochs=1, device=spec["device"], random_state=spec["seed"]).fit(X, y)
    Xt, _ = load_banking77("test", return_X_y=True)
    Xt = list(Xt)

    module = clf.module_
    config = module.encoder.config
    config.id2label = {i: str(c) for i, c in enumerate(clf.classes_)}
    config.label2id = {v: k for k, v in config.id2label.items()}

    class MeanPooledClassifier(PreTrainedModel):
        # The same encoder and head as the estimator, behind the interface pipelines call.
        config_class = type(config)
        _supports_sdpa = True
        _supports_flash_attn = True
        _supports_attention_backend = True

        def __init__(self, cfg):
            super().__init__(cfg)
            self.encoder, self.head = module.encoder, module.head

        def forward(self, input_ids, attention_mask, **kwargs):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return SequenceClassifierOutput(logits=self.head(pool(hidden, attention_mask, clf.pooling_)))

    hf = MeanPooledClassifier(config).to(clf.device_).eval()
    transformers.logging.set_verbosity_error()  # the pipeline warns about any custom model class
    rows = []
    t0 = time.perf_counter()
    proba = clf.predict_proba(Xt)
    ours = time.perf_counter() - t0
    rows.append({"part": "predict", "how": "TokenSparseClassifier.predict_proba", "texts": len(Xt),
                 "seconds": ours, "texts_per_s": len(Xt) / ours})
    pred = clf.classes_[proba.argmax(1)]
    for bs in (1, 32):
        pipe = pipeline("text-classification", model=hf, tokenizer=clf.tokenizer_, device=clf.device_,
                        batch_size=bs, truncation=True, max_length=clf.max_length)
        t0 = time.perf_counter()
        out = pipe(Xt)
        sec = time.perf_counter() - t0
        agree = float(np.mean([o["label"] == str(p) for o, p in zip(out, pred)]))
        rows.append({"part": "predict", "how": f"transformers pipeline, batch_size={bs}", "texts": len(Xt),
                     "seconds": sec, "texts_per_s": len(Xt) / sec, "agreement_with_predict": agree,
                     "speedup_of_predict": sec / ours})
    return rows


def _spawn(target, spec):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(spec, q))
    p.start()
    row = q.get()
    p.join()
    return row


def machine(device, threads):
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "threads": threads, "device": device}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["ratio", "scaling", "predict"], choices=["ratio", "scaling", "predict"])
    ap.add_argument("--n-train", type=int, default=3000, help="training texts for ratio and predict")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), help="ratio fits to run")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="backbone (a packaged name or a local folder)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=None, help="JSON lines file (default results/cost_<device>.jsonl)")
    args = ap.parse_args(argv)

    info = machine(args.device, args.threads)
    print("how:", json.dumps(info), f"seed={args.seed}", flush=True)
    out = Path(args.out) if args.out else RESULTS / f"cost_{args.device.split(':')[0]}.jsonl"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    out.parent.mkdir(parents=True, exist_ok=True)

    class Rows(list):
        # Each row is written as soon as it exists: a crash later keeps what was measured.
        def append(self, row):
            super().append(row)
            with out.open("a") as f:
                f.write(json.dumps({"run": stamp, "machine": info, **row}) + "\n")

    rows = Rows()
    base = {"seed": args.seed, "device": args.device, "threads": args.threads, "model": args.model}

    if "ratio" in args.parts:
        by_name = {}
        for name in args.variants:
            strategy, plain, options = VARIANTS[name]
            spec = dict(base, part="ratio", strategy=strategy, plain_path=plain, n_train=args.n_train,
                        epochs=args.epochs, strategy_options=options)
            row = _spawn(fit_one, spec)
            rows.append(dict(row, variant=name))
            by_name[name] = row
            print(f"ratio  {name:20s} fit {row['fit_s']:7.1f}s  training {row['stages']['training']:7.1f}s"
                  f"  optimizer state {row.get('optimizer_state_bytes', 0) / 2**20:7.2f} MiB  peak RSS {row['peak_rss_mib']:7.0f} MiB"
                  f"  test acc {row['test_accuracy']:.4f}", flush=True)
            print("       stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in row["stages"].items()), flush=True)
        full = by_name.get("full")
        for name, ts in by_name.items():
            if full is not None and name != "full":
                print(f"{name} / full: fit {ts['fit_s'] / full['fit_s']:.2f}x, training stage "
                      f"{ts['stages']['training'] / full['stages']['training']:.2f}x, optimizer state "
                      f"{ts['optimizer_state_bytes'] / full['optimizer_state_bytes']:.4f}x, peak RSS {ts['peak_rss_mib'] / full['peak_rss_mib']:.2f}x")

    if "scaling" in args.parts:
        for n in args.sizes:
            spec = dict(base, part="scaling", strategy="token_sparse", plain_path=False, n_train=n, epochs=1)
            row = _spawn(fit_one, spec)
            rows.append(row)
            print(f"scaling n={n:6d}  fit {row['fit_s']:7.1f}s  training {row['stages']['training']:7.1f}s  "
                  f"peak RSS {row['peak_rss_mib']:7.0f} MiB", flush=True)
        for row in token_group_timing(args.sizes, args.seed, args.model):
            rows.append(dict(base, **row))
            print(f"token groups n={row['n_train']:6d}  tokens {row['n_tokens']:7d}  {row['seconds']:.3f}s "
                  f"({1e6 * row['seconds'] / row['n_tokens']:.2f} us/token)", flush=True)

    if "predict" in args.parts:
        for row in predict_speed(dict(base, n_train=args.n_train)):
            rows.append(dict(base, **row))
            print(f"predict {row['how']:45s} {row['texts_per_s']:8.1f} texts/s"
                  + (f"  agreement {row['agreement_with_predict']:.4f}  predict is {row['speedup_of_predict']:.2f}x faster"
                     if "agreement_with_predict" in row else ""), flush=True)

    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    sys.exit(main())
