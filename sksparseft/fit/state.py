"""What one call of ``fit`` carries from stage to stage (see ``fit_stages.py``)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class FitState:
    """The data and intermediate results of one fit; each stage reads some fields and sets others.

    Set before the first stage: the validated ``texts``, ``y``, ``classes``, ``y_enc``, the
    ``device``, ``accelerator``, ``seed``, the ``strategy``, the ``class_weight``, the target
    ``kind`` (:mod:`sksparseft.fit.targets`), the ``sample_weight`` and the multi-label
    ``label_names``. The rest is filled stage by stage, in order: load (tokenizer ..
    valid_data), token_groups (groups .. focus), linear_probe (module), selection (mask ..
    learning_rate), training (history .. average), interpolation (blend, scores), thresholds
    (unknown_threshold, thresholds), head_refit, finalize.
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
    # rejection
    rejector: object = None  # frozen backbone + linear probe whose confidence decides rejection
    # module and probe
    module: object = None
    probe_head: dict | None = None  # the linear probe on frozen features (head state)
    floor_state: dict | None = None  # the frozen backbone with that probe: what fit falls back to
    floor_scores: tuple | None = None  # its validation (accuracy, log-loss)
    diverged: list = field(default_factory=list)  # stages whose loss became non-finite
    fell_back: bool = False
    # selection
    mask: object = None
    mask_summary: dict | None = None
    n_trainable: int = 0
    learning_rate: float | None = None
    # training
    net: object = None
    probe_scores: tuple | None = None
    start_state: dict | None = None
    history: list = field(default_factory=list)
    interrupted: bool = False
    average: dict | None = None
    # interpolation
    blend: float = 1.0
    scores: dict = field(default_factory=dict)
    # thresholds
    unknown_threshold: float | None = None
    thresholds: np.ndarray | None = None
    features: np.ndarray | None = None  # final pooled features of every text, when thresholds computed them
    # timing
    stage_times: dict = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

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
