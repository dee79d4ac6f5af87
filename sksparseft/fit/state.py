"""What one call of ``fit`` carries from stage to stage (the stages: :mod:`sksparseft.fit.stages`)."""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..strategies import get_strategy, option_names
from ..model.devices import broadcast_from_main, make_accelerator, resolve_device, resolve_precision
from ..validation import check_unknown_label, class_weights, drop_unweighted, label_names, validate_labelled
from .moved import strategy_options
from .selection import ModelSelection
from .targets import target_kind


@dataclass
class FitState:
    """The data and intermediate results of one fit; each stage reads some fields and sets others.

    Set before the first stage (:meth:`start`): the validated ``texts``, ``y``, ``classes``,
    ``y_enc``, the ``device``, ``accelerator``, ``seed``, the ``strategy``, the
    ``class_weight``, the target ``kind`` (:mod:`sksparseft.fit.targets`), the
    ``sample_weight``, the multi-label ``label_names`` and the estimator's ``params``. The
    rest is filled stage by stage, in order: load (tokenizer .. valid_data), token_groups
    (groups .. focus), rejection (rejector, unknown_threshold), linear_probe (module,
    probe_head), selection (mask .. learning_rate, and ``selection``: the
    :class:`~sksparseft.fit.selection.ModelSelection` that holds the snapshots and choices from
    here on), contrastive, training (net, history, interrupted), interpolation, thresholds,
    head_refit, finalize.
    """

    texts: list
    y: np.ndarray
    classes: np.ndarray
    y_enc: np.ndarray
    device: object
    accelerator: object = None
    seed: int | None = None
    strategy: object = None
    class_weight: np.ndarray | None = None
    kind: object = None
    sample_weight: np.ndarray | None = None
    label_names: list | None = None
    autocast_dtype: object = None  # the training passes' autocast dtype (None: float32)
    params: dict = field(default_factory=dict)  # the estimator's get_params(): what identifies the fit
    # load
    tokenizer: object = None
    encoder: object = None
    pooling: str | None = None
    encodings: dict | None = None
    train_idx: np.ndarray | None = None
    valid_idx: np.ndarray | None = None
    train_encodings: dict | None = None
    y_train: np.ndarray | None = None
    valid_data: tuple | None = None  # (encodings, y) held out, or None
    # token groups
    groups: list = field(default_factory=list)
    added: list = field(default_factory=list)
    min_count: int = 1
    focus: np.ndarray | None = None
    # memory
    backbone_key: str | None = None  # the frozen backbone's namespace in ``memory``
    prefix_store: tuple | None = None  # (store, keys it gave) of the frozen blocks' outputs
    # rejection
    rejector: object = None  # frozen backbone + linear probe whose confidence decides rejection
    # module and probe
    module: object = None
    probe_head: dict | None = None  # the linear probe on frozen features (head state)
    # selection
    mask: object = None
    mask_summary: dict | None = None
    n_trainable: int = 0
    learning_rate: float | None = None
    plan: dict = field(default_factory=dict)  # the cross-entropy epochs planned (fit.budget.plan_epochs)
    selection: ModelSelection = field(default_factory=ModelSelection)  # snapshots and choices (set in selection)
    # training
    net: object = None
    history: list = field(default_factory=list)  # the cross-entropy epochs' rows
    interrupted: bool = False
    # thresholds
    unknown_threshold: float | None = None
    thresholds: np.ndarray | None = None
    features: np.ndarray | None = None  # final pooled features of every text, when thresholds computed them
    # timing
    stage_times: dict = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def start(cls, est, X, y, sample_weight=None):
        """Validate the inputs and ``est``'s settings that need them; fail before anything loads."""
        if est.strategy_options is not None and not isinstance(est.strategy_options, dict):
            raise ValueError(f"strategy_options must be a dict or None, got {est.strategy_options!r}")
        strategy = get_strategy(est.strategy, strategy_options(est, option_names(est.strategy)))
        if strategy.settings.get("ce_min_layer") is not None and not est.contrastive_epochs:
            raise ValueError("strategy_options ce_min_layer needs a contrastive stage (contrastive_epochs > 0): "
                             "without one the entries below it would never train")
        device = resolve_device(est.device)
        accelerator = None
        if est.accelerate:
            accelerator = make_accelerator(device)
            if accelerator.num_processes > 1 and est.checkpoint_path is not None:
                raise ValueError("checkpoint_path is not supported with accelerate=True over several processes")
            device = accelerator.device
        names = label_names(y)
        X, y, sample_weight = drop_unweighted(X, y, sample_weight)
        texts, y, classes, y_enc = validate_labelled(X, y)
        kind = target_kind(y_enc)
        weights = class_weights(est.class_weight, classes, y)  # unknown classes fail before anything loads
        _check_targets(est, kind, y)
        seed = est.random_state
        if seed is None:
            # scikit-learn's convention: None is fresh randomness (mask, split, batches) in every fit.
            seed = int(np.random.default_rng().integers(2**31 - 1))
            if accelerator is not None:
                seed = broadcast_from_main(seed)  # every process must draw the same mask and split
            if est.checkpoint_path is not None:
                warnings.warn("random_state=None draws a new mask and split in every fit, so a checkpoint of an "
                              "earlier fit is never resumed; set random_state to resume", stacklevel=4)
        else:
            torch.manual_seed(seed)
        return cls(texts=texts, y=y, classes=classes, y_enc=y_enc, device=device, accelerator=accelerator,
                   seed=seed, strategy=strategy, class_weight=weights, kind=kind, sample_weight=sample_weight,
                   label_names=names,
                   autocast_dtype=resolve_precision(est.precision, device, strategy.bf16_on_cpu()),
                   params=est.get_params())

    def fit_history(self):
        """``history_``: with a validation split, row 0 is the linear probe where training started."""
        return self.selection.history(self.history)

    def set_encodings(self, encodings):
        """Install the encoded texts; the training and held-out parts are cut once, here.

        Per-text weights ride along in the encodings (key ``sample_weight``) when given.
        """
        if self.sample_weight is not None:
            encodings = dict(encodings, sample_weight=self.sample_weight)
        self.encodings = encodings
        self.train_encodings = {k: v[self.train_idx] for k, v in encodings.items()}
        self.y_train = self.y_enc[self.train_idx]
        self.valid_data = None
        if self.valid_idx is not None:
            self.valid_data = ({k: v[self.valid_idx] for k, v in encodings.items()}, self.y_enc[self.valid_idx])

    @contextlib.contextmanager
    def timed(self, name):
        """Record the wall time of stage ``name`` (stages run back to back, so the times add up)."""
        begin = time.perf_counter()
        try:
            yield
        finally:
            self.stage_times[name] = time.perf_counter() - begin

    @property
    def fit_time(self):
        return time.perf_counter() - self.started


def _check_targets(est, kind, y):
    """``unknown_label`` must fit ``y``'s labels; "auto" multi-label thresholds need a validation split."""
    if est.unknown_label is not None:
        if kind.multilabel:
            raise ValueError("unknown_label applies to one label per text; a multi-label y (2-D indicator) "
                             "rejects a text by predicting none of its labels")
        check_unknown_label(est.unknown_label, y)
    if kind.multilabel and est.multilabel_threshold == "auto" and not est.validation_fraction:
        raise ValueError("multilabel_threshold='auto' is chosen on the validation split; set "
                         "validation_fraction > 0 or give multilabel_threshold as a number")
