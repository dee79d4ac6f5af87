"""Lab copies of fit stage bodies, with the one seam a lead needs (lab only).

A lead that changes what happens *inside* a stage (the net that trains, the data it sees, the
loop of the contrastive stage) overrides the whole ``stage_<name>`` method of
``TokenSparseClassifier`` and runs one of these copies with its change. Each copy follows the
package's stage (``sksparseft/fit/stages.py``) step for step; with no change given it fits
the same model (tests/research checks this), so a difference in a lead's rows is the lead's.
The copies cover single-process fits without ``checkpoint_path``: the screen runs nothing else.
"""

from __future__ import annotations

import warnings

import numpy as np

from sksparseft.fit.contrastive import train_contrastive
from sksparseft.fit.training import EpochAverage, build_net


def contrastive_stage(est, state, *, train=train_contrastive, **extra):
    """``stage_contrastive`` with ``train`` (called as the package calls ``train_contrastive``, plus ``extra``)."""
    _single_process(state, "contrastive")
    with est._oom_advice("contrastive training"):
        losses = train(
            state.module, state.train_encodings, state.y_train, epochs=est.contrastive_epochs,
            batch_size=est.batch_size, learning_rate=state.learning_rate, weight_decay=est.weight_decay,
            device=state.device, random_state=state.seed, progress=est._progress("contrastive"), **extra,
        )
    if est.verbose and losses:
        print("contrastive loss per epoch: " + ", ".join(f"{v:.4f}" for v in losses))
    if not all(np.isfinite(losses)):
        epoch = next(i for i, v in enumerate(losses, 1) if not np.isfinite(v))
        warnings.warn(f"the contrastive stage's loss became non-finite in epoch {epoch}; its weights are discarded "
                      "and training goes on from the frozen backbone", stacklevel=4)
        state.module.load_trainable_state_(state.floor_state)
        state.diverged.append("contrastive")
        return
    if est.head_init == "linear_probe":
        est._fit_probe(state)  # training starts from a probe on the features it will finetune


def training_stage(est, state, *, encodings=None, adapt_net=None):
    """``stage_training``: the net ``adapt_net(net)`` returns trains on ``encodings`` (default: the training part)."""
    _single_process(state, "training")
    if est.checkpoint_path is not None:
        raise ValueError("the lab's training stage does not resume from checkpoints (checkpoint_path)")
    extra = [("epoch_average", EpochAverage())] if est.average_epochs else []
    lr = state.learning_rate
    net = build_net(
        state.module, n_train=len(state.train_idx), lr=lr, head_lr=est.head_learning_rate or lr,
        weight_decay=est.weight_decay, max_epochs=est.max_epochs, batch_size=est.batch_size,
        device=state.device, class_weight=state.class_weight, valid_data=state.valid_data,
        patience=est.patience, callbacks=est.callbacks, verbose=est.verbose, extra_callbacks=extra,
        accelerator=state.accelerator, kind=state.kind,
    )
    state.net = net = adapt_net(net) if adapt_net is not None else net
    # Where training starts (the linear probe): one end of the line the interpolation stage chooses on.
    state.start_state = state.module.trainable_state()
    with est._oom_advice("training"):
        net.fit(state.train_encodings if encodings is None else encodings, state.y_train)
    state.module = net.module_
    state.interrupted = bool(getattr(net, "interrupted_", False))
    if state.interrupted:
        warnings.warn(f"fit was interrupted after {len(net.history)} epoch(s); keeping the best weights so far",
                      stacklevel=4)
    state.history = [{k: v for k, v in row.items() if k != "batches"} for row in net.history]
    bad = [row.get("epoch") for row in state.history if not np.isfinite(row.get("train_loss", 0.0))]
    if bad:
        warnings.warn(f"the cross-entropy finetune's loss became non-finite in epoch {bad[0]}; its weights are "
                      "discarded", stacklevel=4)
        state.module.load_trainable_state_(state.start_state)
        state.diverged.append("training")
        return
    state.average = dict(net.callbacks_)["epoch_average"].average() if est.average_epochs else None
    if state.average is not None:
        state.module.load_trainable_state_(state.average)  # the finetuned end: the epochs' average


def _single_process(state, stage):
    if state.accelerator is not None:
        raise ValueError(f"the lab's {stage} stage runs single-process fits only (accelerate=False)")
