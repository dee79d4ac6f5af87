"""Training and inference loops (fit stages "training", "linear_probe" and "head_refit"): skorch drives the masked training."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping, EpochScoring, GradientNormClipping, LRScheduler, ProgressBar
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from skorch.hf import AccelerateMixin

from ..model.batching import BucketLoader, trim_collate
from ..model.inference import eval_batch_size, run_inference
from .targets import SingleLabel, TargetLoss, weighted_score


class SparseNet(NeuralNet):
    """skorch NeuralNet whose optimizer only ever sees trainable tensors.

    Frozen backbone tensors get no gradient and no optimizer state.
    """

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        # skorch swallows KeyboardInterrupt and ends training cleanly; remember that it happened.
        self.interrupted_ = False
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except KeyboardInterrupt:
            # EarlyStopping stops training by raising KeyboardInterrupt too.
            self.interrupted_ = not any(
                isinstance(cb, EarlyStopping) and cb.misses_ >= cb.patience for _, cb in self.callbacks_
            )
            raise

    def infer(self, x, **fit_params):
        # Per-text weights travel with the batch for the loss; the module never sees them.
        if isinstance(x, Mapping) and "sample_weight" in x:
            x = {k: v for k, v in x.items() if k != "sample_weight"}
        return super().infer(x, **fit_params)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        weight = X.get("sample_weight") if isinstance(X, Mapping) else None
        if weight is None:
            return super().get_loss(y_pred, y_true, X=X, training=training)
        target = torch.as_tensor(y_true).to(y_pred.device)
        return self.criterion_(y_pred, target, sample_weight=torch.as_tensor(weight).to(y_pred.device))

    def get_all_learnable_params(self):
        for name, param in super().get_all_learnable_params():
            if param.requires_grad:
                yield name, param


class AcceleratedSparseNet(AccelerateMixin, SparseNet):
    """SparseNet trained data-parallel through Hugging Face Accelerate (skorch's integration)."""

    def _initialize_accelerator(self):
        # The loss has no parameters: wrapping it in DistributedDataParallel is an error.
        criteria, self._criteria = self._criteria, []
        try:
            return super()._initialize_accelerator()
        finally:
            self._criteria = criteria


class EpochAverage(Callback):
    """Uniform average of the trainable weights after every epoch (SWA over the run).

    Izmailov et al. (2018), "Averaging weights leads to wider optima and better
    generalization". Keeps one running sum of the trainable tensors; the sum is part of a
    resumable checkpoint, so a resumed fit averages the same epochs.
    """

    #: build_net places it before early stopping, which ends the fit by raising in its own
    #: ``on_epoch_end``: callbacks after it never see the last epoch of a fit that stops early.
    sees_every_epoch = True

    def initialize(self):
        self.sum_, self.count_ = None, 0
        return self

    @torch.no_grad()
    def on_epoch_end(self, net, **kwargs):
        module = net.module_
        if isinstance(module, torch.nn.parallel.DistributedDataParallel):
            module = module.module  # data-parallel fits: the names of the unwrapped model
        state = {n: v.float() for n, v in module.trainable_state().items()}
        if self.sum_ is None:
            self.sum_ = state
        else:
            for n, v in state.items():
                self.sum_[n].add_(v)
        self.count_ += 1

    def average(self):
        """The averaged trainable state, or None before the first epoch ends."""
        if not self.count_:
            return None
        return {n: v / self.count_ for n, v in self.sum_.items()}


class BestEpochStopping(EarlyStopping):
    """skorch's EarlyStopping whose best weights load into the unwrapped model of a data-parallel fit.

    Under Accelerate the weights are captured from the DistributedDataParallel wrapper (names
    prefixed ``module.``) but restored after the model is unwrapped.
    """

    def on_train_end(self, net, **kwargs):
        pass  # RestoreBestEpoch restores, ahead of the user's callbacks

    def restore(self, net, **kwargs):
        """Load the best epoch's weights (skorch's ``on_train_end`` with ``load_best``)."""
        best, prefix = self.best_model_weights_, "module."
        if (best and not isinstance(net.module_, torch.nn.parallel.DistributedDataParallel)
                and all(k.startswith(prefix) for k in best)):
            self.best_model_weights_ = {k[len(prefix):]: v for k, v in best.items()}
        super().on_train_end(net, **kwargs)


class RestoreBestEpoch(Callback):
    """Restores ``stopping``'s best epoch at the end of training.

    It sits before the user's callbacks, which must come before early stopping to see every
    epoch's end, so that their ``on_train_end`` still sees the restored weights.
    """

    def __init__(self, stopping):
        self.stopping = stopping

    def on_train_end(self, net, **kwargs):
        self.stopping.restore(net, **kwargs)


class WarmupLinearDecay:
    """LambdaLR factor: linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total``."""

    def __init__(self, total, warmup):
        self.total = max(int(total), 1)
        self.warmup = max(int(warmup), 0)

    def __call__(self, step):
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        return max(0.0, (self.total - step) / max(self.total - self.warmup, 1))


def _accuracy(kind, net, X, y):
    """Validation score of the epoch: accuracy (multi-label: Jaccard), weighted when texts carry weights."""
    # skorch caches the validation forward pass, so this costs no extra inference.
    return _score(kind, torch.as_tensor(np.asarray(net.predict(X))), X, y)


def _accuracy_everywhere(kind, batch_size, net, X, y):
    """:func:`_accuracy` over every validation text, in each process of a data-parallel fit.

    The cached forward pass holds only this process's share of the texts: scored on it, each
    process would decide early stopping on its own share, and one would stop while another trains.
    The weights are the same in every process, so the same pass over all the texts gives one score.
    """
    module = net.accelerator.unwrap_model(net.module_)
    data = getattr(X, "X", X)
    logits = run_inference(module, data, batch_size, next(module.parameters()).device)
    targets = getattr(X, "y", None)  # the targets skorch passes are this process's share too
    return _score(kind, torch.as_tensor(logits), X, y if targets is None else np.asarray(targets))


def _score(kind, logits, X, y):
    data = getattr(X, "X", X)
    weight = data.get("sample_weight") if isinstance(data, Mapping) else None
    if weight is None and not kind.multilabel:
        return float((np.asarray(logits).argmax(axis=1) == np.asarray(y)).mean())
    return weighted_score(kind, logits, kind.target_tensor(y), weight)


def build_net(module, *, n_train, lr, head_lr, weight_decay, max_epochs, batch_size, device, class_weight, valid_data, patience, callbacks, verbose, warmup_fraction=0.06, extra_callbacks=(), accelerator=None, kind=None, shuffle_seed=0):
    """A ready-to-fit skorch net over ``module``'s trainable tensors (delta values and head).

    ``kind`` (:mod:`sksparseft.fit.targets`) gives the loss and the validation score; texts whose
    encodings carry ``sample_weight`` weigh in the loss and the score by it.

    ``valid_data`` is ``(X, y)`` held out from training (or None); with it, the
    net scores ``valid_acc`` each epoch and stops early after ``patience`` epochs
    without progress, restoring the best epoch's weights. ``extra_callbacks`` with
    ``sees_every_epoch`` and the user's ``callbacks`` run before early stopping (which ends a fit
    by raising in its ``on_epoch_end``), the other ``extra_callbacks`` (checkpoints, which save
    early stopping's state) after it; the best epoch is restored at the end of training before
    the user's callbacks' ``on_train_end``. ``shuffle_seed`` seeds the batch order of a data-parallel
    fit over several processes (the same in every process).
    """
    valid_split = None if valid_data is None else predefined_split(Dataset(*valid_data))
    steps_per_epoch = math.ceil(n_train / batch_size)
    total = steps_per_epoch * max_epochs
    cbs = [
        ("grad_clip", GradientNormClipping(gradient_clip_value=1.0)),
        ("lr_schedule", LRScheduler(policy=torch.optim.lr_scheduler.LambdaLR, lr_lambda=WarmupLinearDecay(total, warmup_fraction * total), step_every="batch")),
    ]
    if valid_data is not None:
        scoring = partial(_accuracy, kind or SingleLabel())
        if accelerator is not None and accelerator.num_processes > 1:
            scoring = partial(_accuracy_everywhere, kind or SingleLabel(), eval_batch_size(batch_size))
        cbs.append(("valid_acc", EpochScoring(scoring, name="valid_acc", lower_is_better=False, on_train=False)))
    early = [cb for cb in extra_callbacks if getattr(cb[1], "sees_every_epoch", False)]
    cbs.extend(early)
    stopping = None
    if valid_data is not None and patience:
        stopping = BestEpochStopping(monitor="valid_acc", lower_is_better=False, patience=patience, load_best=True,
                                     sink=_quiet if not verbose else print)
        cbs.append(("restore_best", RestoreBestEpoch(stopping)))
    # The user's callbacks see every epoch too, the one early stopping ends on included, and the
    # restored best epoch at the end of training.
    cbs.extend(cb if isinstance(cb, tuple) else (f"user_{i}_{type(cb).__name__}", cb) for i, cb in enumerate(callbacks or []))
    if stopping is not None:
        cbs.append(("early_stopping", stopping))
    cbs.extend(cb for cb in extra_callbacks if cb not in early)
    if verbose:
        cbs.append(("progress", ProgressBar()))
    weight = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32)
    net_class, extra = SparseNet, {"device": str(device)}
    if accelerator is not None:
        # skorch's Accelerate integration: module, optimizer, data loaders and the LR schedule
        # are prepared by the accelerator (DDP across processes); the model is unwrapped after.
        # The schedule keeps its length: accelerate steps it once per process per step.
        net_class, extra = AcceleratedSparseNet, {"device": None, "accelerator": accelerator}
        if accelerator.num_processes > 1:
            # Each process takes its share of one sequence of batches: all must cut the same sequence,
            # whatever their dropout drew from the global generator (which differs by process).
            extra["iterator_train__generator"] = torch.Generator().manual_seed(int(shuffle_seed))
    return net_class(
        module,
        criterion=TargetLoss,
        criterion__kind=kind or SingleLabel(),
        criterion__weight=weight,
        optimizer=torch.optim.AdamW,
        optimizer__weight_decay=weight_decay,
        optimizer__param_groups=[("head.*", {"lr": head_lr})],
        lr=lr,
        max_epochs=max_epochs,
        batch_size=batch_size,
        train_split=valid_split,
        callbacks=cbs,
        iterator_train=BucketLoader,
        iterator_train__shuffle=True,
        iterator_train__collate_fn=trim_collate,
        iterator_valid__collate_fn=trim_collate,
        verbose=int(verbose),
        **extra,
    )


def _quiet(*args, **kwargs):
    pass


def fit_head_on_features(module, encodings, y, batch_size, device, *, class_weight=None, progress=None, kind=None):
    """Fit ``module.head`` as a logistic regression on ``module``'s pooled features of ``encodings``.

    The linear probe before training and the head refit after it; texts weigh by
    ``encodings["sample_weight"]`` when present.
    """
    feats = run_inference(module, encodings, batch_size, device, what="features", progress=progress)
    fit_linear_probe(module.head, feats, y, class_weight=class_weight, sample_weight=encodings.get("sample_weight"),
                     kind=kind)


def fit_linear_probe(head, features, y, *, class_weight=None, sample_weight=None, kind=None, C=1.0, max_iter=200):
    """Initialise ``head`` as an L2-regularised logistic regression on frozen features.

    Multinomial for one class per text, one-vs-rest for a multi-label ``kind``. With
    ``sample_weight`` the data term is the weighted mean and the penalty is scaled by the
    total weight, so integer weights give the fit of repeated rows. Starting the finetune
    from a trained head (LP-FT) keeps the first steps from wrecking the backbone with
    gradients of a random head.
    """
    kind = kind or SingleLabel()
    device = head.weight.device
    X = torch.as_tensor(features, dtype=torch.float32, device=device)
    t = kind.target_tensor(y, device=device)
    w = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32, device=device)
    sw = None if sample_weight is None else torch.as_tensor(sample_weight, dtype=torch.float32, device=device)
    W = torch.zeros_like(head.weight, dtype=torch.float32, requires_grad=True)
    b = torch.zeros_like(head.bias, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-6)
    total = len(t) if sw is None else float(sw.sum())
    reg = 0.5 / (C * max(total, 1e-12) if sw is not None else C * max(len(t), 1))

    def closure():
        opt.zero_grad()
        loss = kind.loss(X @ W.T + b, t, class_weight=w, sample_weight=sw) + reg * W.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        head.weight.copy_(W.detach())
        head.bias.copy_(b.detach())
