"""How long the cross-entropy finetune runs: every epoch on few texts, a step budget on many.

An epoch costs in proportion to the training texts; what the finetune adds over frozen features
does not grow with them (with thousands of texts the frozen probe already reads most of what the
data says). So the stage is budgeted in optimiser steps: while ``max_epochs`` epochs fit in
``max_steps`` steps, every epoch runs; past that, the epochs are the budget over the steps an
epoch takes, rounded, at least one. Whole epochs keep the per-epoch validation, early stopping
and the learning-rate decay (which ends with the planned epochs) as they are.
"""

from __future__ import annotations

import math

#: the regimes :func:`plan_epochs` reports
EVERY_EPOCH, STEP_BUDGET = "every epoch", "step budget"


def plan_epochs(n_train, batch_size, max_epochs, max_steps):
    """``{"regime", "epochs", "steps_per_epoch", "max_steps"}`` for a stage over ``n_train`` texts."""
    per_epoch = max(1, math.ceil(n_train / batch_size))
    if max_steps is None or per_epoch * max_epochs <= max_steps:
        return {"regime": EVERY_EPOCH, "epochs": int(max_epochs), "steps_per_epoch": per_epoch,
                "max_steps": max_steps}
    epochs = min(int(max_epochs), max(1, round(max_steps / per_epoch)))
    regime = STEP_BUDGET if epochs < max_epochs else EVERY_EPOCH  # rounded up to every epoch: nothing cut
    return {"regime": regime, "epochs": epochs, "steps_per_epoch": per_epoch, "max_steps": max_steps}
