"""Part ``exports``: file sizes of save()/pickle/exports, ONNX against predict_proba, and the docs' figures.

Fits one default token_sparse model on ``n_train`` BANKING77 texts, then: sizes of ``save()``
(delta only and with the backbone), a joblib pickle and the Hugging Face export; ONNX
probabilities against ``predict_proba`` on the whole BANKING77 test set (max abs difference,
same answers) and the throughput of both; ``docs/img/token_groups.png``,
``docs/img/mask.png`` and an ``explain`` sample.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import ROOT, append_row, banking77_sample, how_run


def _size(path):
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def run(cfg, out, args):
    import joblib
    import matplotlib

    matplotlib.use("Agg")
    from sksparseft import TokenSparseClassifier
    from sksparseft.datasets import load_banking77
    from sksparseft.plotting import plot_mask, plot_token_groups

    seed = cfg.get("seed", 0)
    info = {**how_run(), "n_train": cfg["n_train"], "epochs": cfg["epochs"], "seed": seed}
    print("how:", json.dumps(info), flush=True)

    Xt, yt = load_banking77("test", return_X_y=True)
    Xt = list(Xt)
    clf = TokenSparseClassifier(max_epochs=cfg["epochs"], device="cpu", random_state=seed)
    clf.fit(*banking77_sample(cfg["n_train"], seed))
    row = dict(info, test_accuracy=float(clf.score(Xt, yt)))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        row["save_delta_bytes"] = _size(clf.save(tmp / "delta.safetensors"))
        row["save_with_backbone_bytes"] = _size(clf.save(tmp / "full.safetensors", include_backbone=True))
        joblib.dump(clf, tmp / "model.joblib")
        row["joblib_bytes"] = _size(tmp / "model.joblib")
        row["huggingface_folder_bytes"] = _size(clf.to_huggingface(tmp / "hf"))
        onnx_path = clf.to_onnx(tmp / "model.onnx")
        row["onnx_bytes"] = _size(onnx_path)

        import onnxruntime as ort

        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        t0 = time.perf_counter()
        proba = clf.predict_proba(Xt)
        row["predict_texts_per_s"] = len(Xt) / (time.perf_counter() - t0)
        # The same length-sorted batches of 64 that predict uses, through onnxruntime.
        order = np.argsort([len(t) for t in Xt])
        onnx_proba = np.empty_like(proba)
        t0 = time.perf_counter()
        for start in range(0, len(Xt), 64):
            rows = order[start : start + 64]
            enc = clf.tokenizer_([Xt[i] for i in rows], padding=True, truncation=True, max_length=clf.max_length,
                                 return_tensors="np")
            (out,) = sess.run(None, {"input_ids": enc["input_ids"].astype(np.int64),
                                     "attention_mask": enc["attention_mask"].astype(np.int64)})
            onnx_proba[rows] = out
        row["onnx_texts_per_s"] = len(Xt) / (time.perf_counter() - t0)
        row["onnx_max_abs_diff"] = float(np.abs(onnx_proba - proba).max())
        row["onnx_same_answers"] = float((onnx_proba.argmax(1) == proba.argmax(1)).mean())

    img = ROOT / "docs" / "img"
    img.mkdir(parents=True, exist_ok=True)
    plot_token_groups(clf, top=6).savefig(img / "token_groups.png", dpi=80)
    plot_mask(clf).savefig(img / "mask.png", dpi=80)
    sample = clf.explain(["I still haven't received my new card", "Why was I charged a fee for my transfer?"], top=3)
    row["explain_sample"] = sample
    row["token_group_table_head"] = clf.token_group_table(top=3)[:9]
    for k, v in row.items():
        if k not in ("explain_sample", "token_group_table_head"):
            print(f"{k}: {v}")
    print(json.dumps(sample, indent=1, default=str))
    append_row(out, json.loads(json.dumps(row, default=str)))
    print(f"wrote {out}")
