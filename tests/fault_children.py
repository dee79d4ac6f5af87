"""Child processes of tests/test_faults.py: what must happen in a process of its own.

``python fault_children.py fit TINY_MODEL CHECKPOINT OUT [CONTRASTIVE_EPOCHS]``
    a checkpointed fit (killed with SIGKILL by the test, then run again); probabilities to OUT (.npy),
    and printed (JSON) the numbers of the epochs this process ran, its stages, whether it finetuned
    (``finetuned_``), where on the probe-to-finetune line it ended (``interpolation_``), each
    training epoch's seconds and the sksparseft it imported
``python fault_children.py save MODEL_FILE TARGET N START``
    load MODEL_FILE, say so (START.ready.PID), wait for the file START, then save to TARGET N times
``python fault_children.py memory MODEL_FILE N``
    predict N texts from a generator; print peak memory and the largest gap to batch-by-batch calls
    (over the first 10,000 texts)
``python fault_children.py disk_full MODEL_FILE TINY_MODEL DIR``
    on a small disk mounted at DIR: a first version of every file sksparseft writes (save,
    checkpoint, Hugging Face folder, ONNX graph), then the disk filled, then each write again;
    prints per writer the error, whether the first version is intact, and any file left behind
"""

import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

import sksparseft
from sksparseft import TokenSparseClassifier

TEXTS = [f"{s} {tail}" for s in ("my card has not arrived", "refund my payment", "i forgot my pin",
                                 "where is my new card", "i want my money back", "change my pin code")
         for tail in ("now", "today", "please", "again")]
LABELS = [("card", "refund", "pin", "card", "refund", "pin")[i // 4] for i in range(len(TEXTS))]
#: The checkpointed fit: long enough (many short epochs) to be killed in the middle.
FIT = dict(max_epochs=40, patience=0, batch_size=4, device="cpu", random_state=0,
           validation_fraction=0.2, contrastive_epochs=0, learning_rate=3e-3)


def fit(tiny_model, checkpoint, out, contrastive_epochs=FIT["contrastive_epochs"]):
    from cases import EpochLog

    log = EpochLog()
    clf = TokenSparseClassifier(tiny_model, checkpoint_path=checkpoint if checkpoint != "-" else None,
                                callbacks=[log], **{**FIT, "contrastive_epochs": int(contrastive_epochs)})
    np.save(out, clf.fit(TEXTS, LABELS).predict_proba(TEXTS))
    print(json.dumps({"epochs": log.epochs, "stages": list(clf.fit_stages_), "finetuned": bool(clf.finetuned_),
                      "interpolation": float(clf.interpolation_), "package": sksparseft.__file__,
                      "durations": [row["dur"] for row in clf.history_ if "dur" in row]}))


def save(model_file, target, n, start):
    clf = TokenSparseClassifier.load(model_file)
    Path(f"{start}.ready.{os.getpid()}").touch()
    while not os.path.exists(start):
        time.sleep(0.001)
    for _ in range(int(n)):
        clf.save(target)


def _texts(n):
    """``n`` texts, mostly short; one in a thousand runs to the token limit (it sets a batch's padding)."""
    for i in range(n):
        yield f"text {i} about my card" + (" and my refund" * 60 if i % 1000 == 999 else "")


def memory(model_file, n):
    n = int(n)
    clf = TokenSparseClassifier.load(model_file)
    proba = clf.predict_proba(_texts(n))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    # Batch-by-batch over the first 10,000 texts: across the chunk boundaries of one call.
    texts = list(_texts(min(n, 10_000)))
    step = 1000
    by_batch = np.concatenate([clf.predict_proba(texts[i:i + step]) for i in range(0, len(texts), step)])
    gap = float(np.abs(proba[:len(texts)] - by_batch).max())
    print(json.dumps({"peak_kib": peak, "rows": len(proba), "max_gap": gap}))


def _digest(path):
    """SHA-256 over a file, or over every file of a folder (names included)."""
    h = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode() + p.read_bytes())
    return h.hexdigest()


def _fill(folder):
    """Write zeros into ``folder`` until its disk is full."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def disk_full(model_file, tiny_model, out):
    out = Path(out)
    clf = TokenSparseClassifier.load(model_file)
    quick = {**FIT, "max_epochs": 1, "validation_fraction": 0.0}
    writers = {
        "save": (out / "model.safetensors", lambda p: clf.save(p)),
        "to_huggingface": (out / "hf", lambda p: clf.to_huggingface(p, overwrite=True)),
        "to_onnx": (out / "model.onnx", lambda p: clf.to_onnx(p)),
        # other parameters than the first fit: its checkpoint is rewritten after the first epoch
        "checkpoint": (out / "fit.ckpt", lambda p: TokenSparseClassifier(
            tiny_model, checkpoint_path=str(p), **{**quick, "max_epochs": 2}).fit(TEXTS, LABELS)),
    }
    TokenSparseClassifier(tiny_model, checkpoint_path=str(out / "fit.ckpt"), **quick).fit(TEXTS, LABELS)
    for name, (path, write) in writers.items():
        if name != "checkpoint":
            write(path)
    before = {name: _digest(path) for name, (path, _) in writers.items()}
    expected = {p.name for p in out.iterdir()} | {"filler"}
    _fill(out)
    results = {}
    for name, (path, write) in writers.items():
        try:
            write(path)
            error = None
        except Exception as exc:  # noqa: BLE001 - reported to the test, which checks it
            error = {"type": type(exc).__name__, "message": str(exc), "errno": getattr(exc, "errno", None)}
        results[name] = {"error": error, "intact": _digest(path) == before[name],
                         "left": sorted({p.name for p in out.iterdir()} - expected), "path": str(path)}
    print(json.dumps(results))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    {"fit": fit, "save": save, "memory": memory, "disk_full": disk_full}[sys.argv[1]](*sys.argv[2:])
