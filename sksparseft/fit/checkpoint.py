"""Resumable training checkpoints: one small file per fit, rewritten atomically after each epoch.

A checkpoint holds only what training changes (the sparse delta, the head, the optimizer, the
learning-rate position via the history, the RNG and early-stopping state), never the frozen
backbone, and is read back with ``torch.load(weights_only=True)``: loading runs no code.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch
from skorch.callbacks import Callback, EarlyStopping, LRScheduler

from ..atomic import atomic_write
from .training import EpochAverage

FORMAT = 1
FILENAME = "sksparseft-checkpoint.pt"


def _primitive(value):
    # History rows hold numpy scalars; weights_only loading accepts Python primitives only.
    if isinstance(value, dict):
        return {str(k): _primitive(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_primitive(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def atomic_torch_save(obj, path):
    """Write ``obj`` to ``path`` so that a crash leaves either the old file or the new one."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


class ResumeCheckpoint(Callback):
    """Save training state after every epoch; restore it at the start of a resumed fit.

    Parameters
    ----------
    path : str
        The checkpoint file.
    fingerprint : str
        Identifies the fit (parameters, data, mask); a checkpoint with another
        fingerprint is never resumed from.
    """

    def __init__(self, path, fingerprint):
        self.path = path
        self.fingerprint = fingerprint

    def on_epoch_end(self, net, **kwargs):
        es = _callback(net, EarlyStopping)
        es_state = None
        if es is not None:
            best = es.best_model_weights_
            es_state = {
                "misses": int(es.misses_),
                "threshold": float(es.dynamic_threshold_),
                "best_epoch": int(es.best_epoch_) if getattr(es, "best_epoch_", None) is not None else -1,
                "best_trainable": None if best is None else {n: best[n].detach().cpu().clone() for n, p in net.module_.named_parameters() if p.requires_grad},
            }
        state = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "epoch": len(net.history),
            "trainable": net.module_.trainable_state("cpu"),
            "optimizer": net.optimizer_.state_dict(),
            "history": _primitive([{k: v for k, v in row.items() if k != "batches"} for row in net.history]),
            "rng": torch.get_rng_state(),
            "early_stopping": es_state,
        }
        avg = _callback(net, EpochAverage)
        if avg is not None and avg.count_:
            state["epoch_average"] = {"count": int(avg.count_), "sum": {n: v.cpu().clone() for n, v in avg.sum_.items()}}
        atomic_torch_save(state, self.path)


def _callback(net, kind):
    """The net's first callback of class ``kind``, or None."""
    return next((cb for _, cb in net.callbacks_ if isinstance(cb, kind)), None)


def load_checkpoint(path, fingerprint):
    """The saved state if ``path`` holds a checkpoint of this very fit, else None."""
    if not os.path.isfile(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file
        raise ValueError(f"{path} is not a readable sksparseft checkpoint ({exc}); delete it to start afresh") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} has an unknown checkpoint format; delete it to start afresh")
    if state.get("fingerprint") != fingerprint:
        return None
    return state


def restore(net, state):
    """Put a checkpoint's state into an initialised skorch net, before training goes on."""
    params = dict(net.module_.named_parameters())
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value.to(params[name].device))
    net.optimizer_.load_state_dict(state["optimizer"])
    net.history.clear()
    for row in state["history"]:
        net.history.append(dict(row, batches=[]))
    torch.set_rng_state(state["rng"])
    avg, saved = _callback(net, EpochAverage), state.get("epoch_average")
    if avg is not None and saved:
        device = next(iter(params.values())).device
        avg.sum_ = {n: v.to(device) for n, v in saved["sum"].items()}
        avg.count_ = saved["count"]


class RestoreTrainingState(Callback):
    """Re-applies the state that other callbacks reset at train begin on a resumed fit.

    Must come after EarlyStopping and LRScheduler in the callback list.
    """

    def __init__(self, state):
        self.state = state

    def on_train_begin(self, net, **kwargs):
        for _, cb in net.callbacks_:
            if isinstance(cb, LRScheduler) and cb.step_every == "batch":
                # skorch positions a resumed scheduler by epochs; ours steps every batch.
                cb.lr_scheduler_ = cb._get_scheduler(net, cb.policy_, **{**cb.kwargs, "last_epoch": cb.batch_idx_ - 1})
        es_state = self.state.get("early_stopping")
        if not es_state:
            return
        for _, cb in net.callbacks_:
            if isinstance(cb, EarlyStopping):
                cb.misses_ = es_state["misses"]
                cb.dynamic_threshold_ = es_state["threshold"]
                if es_state["best_epoch"] >= 0:
                    cb.best_epoch_ = es_state["best_epoch"]
                if es_state["best_trainable"] is not None:
                    full = {k: v.detach().clone() for k, v in net.module_.state_dict().items()}
                    full.update(es_state["best_trainable"])
                    cb.best_model_weights_ = full


def resume_callbacks(path, fingerprint):
    """``(callbacks, saved state or None)`` that make a fit write, and resume from, ``path``.

    The callbacks go after EarlyStopping and LRScheduler (and after EpochAverage, so that a
    checkpoint holds the epoch's average).
    """
    state = load_checkpoint(path, fingerprint)
    callbacks = [("resume_checkpoint", ResumeCheckpoint(path, fingerprint))]
    if state is not None:
        callbacks.append(("restore_training_state", RestoreTrainingState(state)))
    return callbacks, state


def fit_or_resume(net, X, y, state, *, max_epochs, patience):
    """Train ``net`` from the start, or on from a checkpoint's ``state`` for the epochs it has left."""
    if state is None:
        net.fit(X, y)
        return net
    net.initialize()
    restore(net, state)
    remaining = max_epochs - state["epoch"]
    es = state.get("early_stopping")
    if remaining > 0 and not (es and patience and es["misses"] >= patience):
        net.partial_fit(X, y, epochs=remaining)
    elif es and es["best_trainable"] is not None:
        # The saved fit had already finished: take its best epoch.
        restore(net, dict(state, trainable=es["best_trainable"]))
    return net


def fingerprint(state):
    """Identifies a fit (a checkpoint of another is never resumed): the parameters that shape
    training, the data and the selected mask of a :class:`~sksparseft.fit.state.FitState`."""
    h = hashlib.sha256()
    skip = {"callbacks", "verbose", "device", "checkpoint_path", "memory"}
    h.update(repr(sorted((k, repr(v)) for k, v in state.params.items() if k not in skip)).encode())
    for t in state.texts:
        h.update(t.encode("utf-8", "replace") + b"\x00")
    h.update(repr(list(map(str, state.y))).encode())
    if state.sample_weight is not None:
        h.update(b"sample_weight" + np.asarray(state.sample_weight, dtype=np.float64).tobytes())
    if state.mask is not None:
        for name in sorted(state.mask.indices):
            h.update(name.encode() + state.mask.indices[name].numpy().tobytes())
    return h.hexdigest()
