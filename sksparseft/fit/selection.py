"""Model selection within one fit: the snapshots a fit can end on, and every choice between them.

The snapshots are copies of the module's trainable tensors (``ClassifierModule.trainable_state``):

- ``floor``: the frozen backbone with the linear probe as head (the strategy's tensors at their
  start: a zero delta, pretrained tensors, adapters as created). A fit never ends below it on
  validation, and a fit whose every training stage diverged ends on it.
- ``start``: where the cross-entropy finetune starts (after the contrastive stage, with the probe
  refit on its features): one end of the line the blend is chosen on (WiSE-FT).
- ``end``: where the finetune ended (the best epoch, or the average of the epochs'
  weights, ``average``): the other end.

The choices, in the order fit makes them:

1. divergence (:meth:`ModelSelection.discard_if_diverged`): a stage whose loss turned non-finite is
   undone, the contrastive stage back to the floor, the cross-entropy stage back to its start;
2. the blend (:meth:`ModelSelection.choose_blend`): the point on the line from ``start`` (0) to
   ``end`` (1) best on validation, or, without interpolation, whichever end scored higher;
3. the floor (:meth:`ModelSelection.keep_floor_if_better`): back to the floor when the chosen
   model scored below it on validation (ties keep the finetune), or when nothing trained is left;

and what the fit reports of them: ``interpolation_`` (:attr:`ModelSelection.blend`) and
``finetuned_`` (:attr:`ModelSelection.finetuned`). The decisions themselves are the plain
functions below (:func:`first_non_finite`, :func:`falls_back`, :func:`either_or`,
:func:`reports_finetuned`), so that each is tested on its own.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .interpolation import load_interpolated_, select_interpolation

#: What a diverged stage's weights go back to, and what the warning says happens next.
_UNDO = {
    "contrastive": ("floor", "the contrastive stage's loss", "its weights are discarded and training goes on "
                                                              "from the frozen backbone"),
    "training": ("start", "the cross-entropy finetune's loss", "its weights are discarded"),
}


def first_non_finite(losses):
    """The 1-based epoch of the first non-finite loss in ``losses``, or None when all are finite."""
    return next((i for i, v in enumerate(losses, 1) if not np.isfinite(v)), None)


def either_or(best_end, start):
    """Without interpolation: 1.0 (keep the finetune) unless its best validation score is below the start's.

    Ties keep the finetune.
    """
    return 0.0 if best_end < start else 1.0


def falls_back(chosen, floor, nothing_left):
    """Whether the fit returns to the frozen probe.

    ``chosen`` and ``floor`` are validation ``(score, log-loss)`` pairs (None without a validation
    split); ``nothing_left``: every stage that trained diverged. Ties keep what training chose.
    """
    if nothing_left:
        return True
    return chosen is not None and floor is not None and chosen[0] < floor[0]


def reports_finetuned(trained, diverged, fell_back, blend):
    """``finetuned_``: the fitted model differs from the frozen backbone with its linear probe.

    ``trained`` names the stages that trained (``"contrastive"``, ``"training"``); the model is the
    probe when none did, when the fit fell back, or when the blend sits at the start and the
    contrastive stage (the only thing that can move the start) did not run or diverged.
    """
    if fell_back or not trained:
        return False
    return blend > 0.0 or ("contrastive" in trained and "contrastive" not in diverged)


@dataclass
class ModelSelection:
    """The snapshots of one fit and the choices made on them (see the module's docstring).

    ``score(module)`` gives the validation ``(score, log-loss)`` of the module as loaded, or is
    None without a validation split. ``trained`` names the stages that train in this fit.
    ``sync`` (data-parallel fits) makes every process take process 0's decisions. ``say`` prints
    what was chosen (verbose fits).
    """

    score: Callable | None = None
    trained: tuple = ()
    sync: Callable | None = None
    say: Callable = lambda message: None
    floor: dict | None = None
    floor_scores: tuple | None = None
    start: dict | None = None
    start_scores: tuple | None = None
    average: dict | None = None
    diverged: list = field(default_factory=list)
    blend: float = 1.0
    scores: dict = field(default_factory=dict)
    fell_back: bool = False

    # -- snapshots ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def loaded(self, module, snapshot):
        """``snapshot`` loaded into ``module`` for the block; what was loaded before comes back after."""
        before = {n: v for n, v in module.trainable_state().items() if n in snapshot}
        module.load_trainable_state_(snapshot)
        try:
            yield module
        finally:
            module.load_trainable_state_(before)

    def record_floor(self, module, probe_head):
        """Snapshot the floor (``module`` before anything trains, ``probe_head`` as its head) and score it."""
        floor = module.trainable_state()
        floor.update({f"head.{k}": v for k, v in probe_head.items()})
        self.floor = floor
        if self.score is not None:
            with self.loaded(module, {n: v for n, v in floor.items() if n.startswith("head.")}):
                self.floor_scores = self.score(module)

    def record_start(self, module):
        """Snapshot where the cross-entropy finetune starts."""
        self.start = module.trainable_state()

    def end_at_average(self, module, average):
        """The finetune ends at ``average``, the mean of its epochs' weights (None: no epoch ended)."""
        if average is not None:
            self.average = average
            module.load_trainable_state_(average)

    # -- 1. divergence --------------------------------------------------------------------------
    def discard_if_diverged(self, stage, losses, module):
        """Undo ``stage`` (``"contrastive"`` or ``"training"``) if one of its ``losses`` is non-finite.

        Returns True when it was undone (a warning says so).
        """
        epoch = first_non_finite(losses)
        if epoch is None:
            return False
        back_to, what, then = _UNDO[stage]
        warnings.warn(f"{what} became non-finite in epoch {epoch} (learning_rate too high?); {then}", stacklevel=5)
        module.load_trainable_state_(getattr(self, back_to))
        self.diverged.append(stage)
        if stage == "training":
            self.blend = 0.0  # the line from the start has one point left
        return True

    # -- 2. the blend ---------------------------------------------------------------------------
    def measure_start(self, module):
        """Validation scores of the start (the end stays loaded)."""
        with self.loaded(module, self.start):
            self.start_scores = self.score(module)

    def choose_blend(self, module, history, interpolate):
        """Where on the line from the start to the finetune's end the model sits; loaded into ``module``.

        ``interpolate``: the best point on validation (WiSE-FT); else the end
        unless its best validation score (the best epoch's, or the average's) is below the start's.
        """
        if "training" in self.diverged or self.start is None or self.score is None:
            return
        self.measure_start(module)
        end = module.trainable_state()
        if interpolate:
            self.blend, self.scores = select_interpolation(module, self.start, end, self.score,
                                                           known={0.0: self.start_scores})
        else:
            if self.average is not None:
                best = self.score(module)[0]
            else:
                best = max((row.get("valid_acc", -1.0) for row in history), default=-1.0)
            self.blend = either_or(best, self.start_scores[0])
            if self.blend == 0.0:
                module.load_trainable_state_(self.start)
        if self.sync is not None:
            # Every process must end with the same model, whatever its own float noise chose.
            self.blend, self.scores = self.sync((self.blend, self.scores))
            load_interpolated_(module, self.start, end, self.blend)
        if self.blend == 0.0:
            self.say(f"finetuning did not beat the linear probe on validation (probe {self.start_scores[0]:.4f}): "
                     "keeping the probe")
        elif self.blend < 1.0:
            self.say(f"interpolated {self.blend:.3f} of the way from the linear probe to the finetune "
                     f"(validation accuracy {self.scores[self.blend][0]:.4f})")

    # -- 3. the floor ---------------------------------------------------------------------------
    def keep_floor_if_better(self, module):
        """Load the floor if the chosen model scored below it on validation or nothing trained is left."""
        if not self.trained:
            self.blend = 0.0  # nothing trained: the model is the linear probe
            return
        nothing_left = set(self.diverged) >= set(self.trained)
        chosen = None
        if self.floor_scores is not None and not nothing_left:
            chosen = self.scores.get(self.blend) or self.score(module)
        fall_back = falls_back(chosen, self.floor_scores, nothing_left)
        if self.sync is not None:
            fall_back = self.sync(fall_back)
        if fall_back:
            module.load_trainable_state_(self.floor)
            self.blend, self.fell_back = 0.0, True
            self.say("keeping the frozen backbone with the linear probe: nothing trained scored above it on validation")

    # -- what the fit reports ---------------------------------------------------------------------
    @property
    def finetuned(self):
        """``finetuned_``: the fitted model differs from the frozen backbone with its linear probe."""
        return reports_finetuned(self.trained, self.diverged, self.fell_back, self.blend)

    def history(self, epochs):
        """``history_``: with a validation split, row 0 is the start of the finetune, with the floor's score."""
        rows = [dict(row) for row in epochs]
        if self.start_scores is not None:
            rows.insert(0, {"epoch": 0, "valid_acc": self.start_scores[0], "stage": "linear_probe"})
        if rows and self.floor_scores is not None:
            rows[0]["frozen_probe_valid_acc"] = self.floor_scores[0]
        return rows
