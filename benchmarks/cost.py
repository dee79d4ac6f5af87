"""Part ``cost``: training cost and inference speed of token_sparse against full finetuning.

Sub-parts (each fit runs in a fresh process so that its peak memory is its own):

- ``ratio``: ``full``, ``token_sparse``, ``token_sparse`` on the plain path (delta added
  onto a copy of every weight, dense weight gradients) and ``token_sparse`` restricted to
  blocks 3+ (``min_layer=3``: the backward pass stops there; the frozen blocks 0-2 run once
  per text, and once per epoch with ``cache_frozen=False``) on the same BANKING77 texts,
  same epochs (early stopping off), same seed: fit wall time, training-stage time,
  optimizer state bytes, peak RSS (and CUDA peak), and test accuracy on the BANKING77
  test set; references (``frozen_lr``) are timed on the same texts.
- ``scaling``: ``token_sparse`` fit time and peak memory for 1k, 2k, 5k, 10k training texts
  (one epoch), and token-group discovery time against the number of tokens.
- ``predict``: ``predict`` throughput on the BANKING77 test set against the transformers
  ``pipeline("text-classification")`` on the same finetuned model, and their agreement.
"""

from __future__ import annotations

import time

import numpy as np

from sksparseft import TokenSparseClassifier

from .common import MODEL, append_row, banking77_sample, how_run, in_fresh_process, peak_memory


class PlainPath(TokenSparseClassifier):
    """The estimator with the sparse delta on the plain path whatever the device."""

    def stage_linear_probe(self, state):
        super().stage_linear_probe(state)
        state.module.sparse_backward = False  # read by the delta's forward at every training step


# name: (strategy, plain path, strategy_options[, other estimator parameters])
VARIANTS = {
    "full": ("full", False, None),
    "token_sparse": ("token_sparse", False, None),
    "token_sparse_plain": ("token_sparse", True, None),
    "min_layer3": ("token_sparse", False, {"min_layer": 3, "cache_frozen": True}),
    "min_layer3_uncached": ("token_sparse", False, {"min_layer": 3, "cache_frozen": False}),
    "random": ("random", False, None),
    # Whole random rows (the random_rows strategy), all blocks or the top three.
    "random_rows_top3": ("random_rows", False, {"min_layer": 3}),
    "random_rows_d5": ("random_rows", False, {"density": 0.05}),
    "random_rows_top3_d5": ("random_rows", False, {"min_layer": 3, "density": 0.05}),
}


def fit_one(spec, queue):
    """One timed fit in this process; puts a result row on ``queue``."""

    import torch
    from skorch.callbacks import Callback

    torch.set_num_threads(spec["threads"])
    if spec["device"].startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    seen = {}

    class OptimizerState(Callback):
        """Bytes the optimizer holds (AdamW: two moments per trainable value)."""

        def on_train_end(self, net, **kwargs):
            seen["optimizer_state_bytes"] = int(sum(
                t.numel() * t.element_size()
                for state in net.optimizer_.state.values() for t in state.values() if torch.is_tensor(t) and t.dim()
            ))

    X, y = banking77_sample(spec["n_train"], spec["seed"])
    cls = PlainPath if spec.get("plain_path") else TokenSparseClassifier
    clf = cls(
        spec["model"], strategy=spec["strategy"], strategy_options=spec.get("strategy_options"), max_epochs=spec["epochs"], patience=spec["epochs"] + 1,
        device=spec["device"], random_state=spec["seed"], callbacks=[("optimizer_state", OptimizerState())],
        **spec.get("params", {}),
    )
    clf.fit(X, y)
    peaks = peak_memory()  # of the fit, before the accuracy check below
    from sksparseft.datasets import load_banking77

    Xt, yt = load_banking77("test", return_X_y=True)
    row = dict(spec, fit_s=clf.fit_time_, stages=clf.fit_stages_, trainable_params=int(clf.n_trainable_params_),
               test_accuracy=float(clf.score(Xt, yt)),
               sparse_backward=bool(clf.module_.sparse_backward),
               epochs_run=len(clf.history_) - 1, **seen, **peaks)
    queue.put(row)


def reference_one(spec, queue):
    """One timed reference fit (frozen-embedding logistic regression) on the ratio's texts."""
    import torch

    from sksparseft.datasets import load_banking77

    from .compare import reference

    torch.set_num_threads(spec["threads"])
    X, y = banking77_sample(spec["n_train"], spec["seed"])
    t0 = time.perf_counter()
    model = reference(spec["strategy"], X, y)
    fit_s = time.perf_counter() - t0
    Xt, yt = load_banking77("test", return_X_y=True)
    queue.put(dict(spec, fit_s=fit_s, test_accuracy=float(model.score(Xt, yt)), **peak_memory()))


def token_group_timing(sizes, seed, model=MODEL):
    """Token-group discovery time against the number of tokens it reads."""
    from sksparseft.model.backbone import load_backbone
    from sksparseft.text.tokens import content_sequences, discover_token_groups, encode

    tok, _, _ = load_backbone(model)
    rows = []
    for n in sizes:
        X, y = banking77_sample(n, seed)
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
    from sksparseft.model.backbone import pool
    from sksparseft.datasets import load_banking77

    torch.set_num_threads(spec["threads"])
    X, y = banking77_sample(spec["n_train"], spec["seed"])
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


def run(cfg, out, args):
    """The sub-parts ``cfg["parts"]`` with the config's sizes; rows append to ``out``."""
    import torch

    threads = cfg.get("threads") or torch.get_num_threads()
    base = {"seed": cfg.get("seed", 0), "device": cfg.get("device", "cpu"), "threads": threads,
            "model": cfg.get("model", MODEL)}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")

    def write(row):
        append_row(out, {"run": stamp, **how_run(), **row})

    if "ratio" in cfg["parts"]:
        _ratio(cfg, base, write)
    if "scaling" in cfg["parts"]:
        for n in cfg.get("sizes", (1000, 2000, 5000, 10000)):
            spec = dict(base, part="scaling", strategy="token_sparse", plain_path=False, n_train=n, epochs=1)
            row = in_fresh_process(fit_one, spec)
            write(row)
            print(f"scaling n={n:6d}  fit {row['fit_s']:7.1f}s  training {row['stages']['training']:7.1f}s  "
                  f"peak RSS {row['peak_rss_mib']:7.0f} MiB", flush=True)
        for row in token_group_timing(cfg.get("sizes", (1000, 2000, 5000, 10000)), base["seed"], base["model"]):
            write(dict(base, **row))
    if "predict" in cfg["parts"]:
        for row in predict_speed(dict(base, n_train=cfg["n_train"])):
            write(dict(base, **row))
            print(f"predict {row['how']:45s} {row['texts_per_s']:8.1f} texts/s", flush=True)


def _ratio(cfg, base, write):
    by_name = {}
    for name in cfg.get("variants", list(VARIANTS)):
        strategy, plain, options, *extra = VARIANTS[name]
        spec = dict(base, part="ratio", strategy=strategy, plain_path=plain, n_train=cfg["n_train"],
                    epochs=cfg["epochs"], strategy_options=options, params=extra[0] if extra else {})
        row = in_fresh_process(fit_one, spec)
        write(dict(row, variant=name))
        by_name[name] = row
        print(f"ratio  {name:20s} fit {row['fit_s']:7.1f}s  training {row['stages']['training']:7.1f}s  "
              f"test acc {row['test_accuracy']:.4f}", flush=True)
    for name in cfg.get("references", ()):
        spec = dict(base, part="ratio", strategy=name, n_train=cfg["n_train"])
        row = in_fresh_process(reference_one, spec)
        write(dict(row, variant=name))
        print(f"ratio  {name:20s} fit {row['fit_s']:7.1f}s  test acc {row['test_accuracy']:.4f}", flush=True)
    full = by_name.get("full")
    for name, row in by_name.items():
        if full is not None and name != "full":
            print(f"{name} / full: fit {row['fit_s'] / full['fit_s']:.2f}x, training stage "
                  f"{row['stages']['training'] / full['stages']['training']:.2f}x", flush=True)
