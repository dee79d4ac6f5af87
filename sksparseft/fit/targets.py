"""What a fit predicts: one class per text (softmax), or a set of labels per text (sigmoid).

Each kind of target owns its loss, its probabilities, its per-text validation score and
how its labels read as sets, so that token groups, sensitivity, training, the probe and
validation name neither kind. Sample weights (``fit(..., sample_weight=...)``) enter the
loss as a weighted mean, ``sum(w_i * loss_i) / sum(w_i)``: integer weights then equal
repeating rows, as in scikit-learn.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def _weighted_mean(per_sample, sample_weight):
    w = sample_weight.to(per_sample.dtype)
    return (per_sample * w).sum() / w.sum().clamp_min(torch.finfo(per_sample.dtype).tiny)


class SingleLabel:
    """One class per text: softmax over ``classes_``, cross-entropy, accuracy."""

    multilabel = False

    def loss(self, logits, target, class_weight=None, sample_weight=None):
        """Mean cross-entropy; with ``sample_weight``, weighted by it times the class weight."""
        if sample_weight is None:
            return F.cross_entropy(logits, target, weight=class_weight)
        per = F.cross_entropy(logits, target, reduction="none")
        w = sample_weight if class_weight is None else sample_weight * class_weight[target]
        return _weighted_mean(per, w)

    def probabilities(self, logits):
        return torch.softmax(logits.double(), dim=1)

    def sample_scores(self, logits, target):
        """1.0 where the text's best class is its label."""
        return (logits.argmax(dim=1) == target).double()

    def target_tensor(self, y, device=None):
        return torch.as_tensor(np.asarray(y), dtype=torch.long, device=device)

    def label_sets(self, y):
        """Each text's labels as a list of class indices."""
        return [[int(c)] for c in y]

    def label_counts(self, y, n_classes):
        return np.bincount(np.asarray(y), minlength=n_classes)


class MultiLabel(SingleLabel):
    """Any set of labels per text: a sigmoid per label, binary cross-entropy, one-vs-rest.

    The loss is the sum over labels of each label's binary cross-entropy, averaged over
    texts: per label, exactly a logistic regression's loss, so the linear probe and the head
    refit are one-vs-rest logistic regressions fitted together. The per-text validation
    score is the Jaccard index of the predicted and true label sets at 0.5 (1 when both are empty).
    """

    multilabel = True

    def loss(self, logits, target, class_weight=None, sample_weight=None):
        per = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none").sum(dim=1)
        return per.mean() if sample_weight is None else _weighted_mean(per, sample_weight)

    def probabilities(self, logits):
        return torch.sigmoid(logits.double())

    def sample_scores(self, logits, target):
        pred, true = logits > 0, target > 0.5
        union = (pred | true).sum(dim=1)
        inter = (pred & true).sum(dim=1)
        return torch.where(union > 0, inter.double() / union.clamp_min(1).double(), torch.ones_like(union, dtype=torch.double))

    def target_tensor(self, y, device=None):
        return torch.as_tensor(np.asarray(y), dtype=torch.float32, device=device)

    def label_sets(self, y):
        return [np.flatnonzero(row).tolist() for row in np.asarray(y)]

    def label_counts(self, y, n_classes):
        return np.asarray(y).sum(axis=0).astype(np.int64)


#: The target kind by ``multilabel``.
KINDS = {False: SingleLabel(), True: MultiLabel()}


def target_kind(y_enc):
    """The target kind of encoded labels: 1-D class indices or a 2-D indicator."""
    return KINDS[np.ndim(y_enc) == 2]


class TargetLoss(nn.Module):
    """skorch criterion: the target kind's loss, with per-text weights when the batch carries them."""

    def __init__(self, kind, weight=None):
        super().__init__()
        self.kind = kind
        self.register_buffer("weight", weight)

    def forward(self, logits, target, sample_weight=None):
        return self.kind.loss(logits, target, class_weight=self.weight, sample_weight=sample_weight)


def weighted_score(kind, logits, target, sample_weight=None):
    """Mean (or ``sample_weight``-weighted mean) of the per-text validation scores."""
    scores = kind.sample_scores(logits, target)
    if sample_weight is None:
        return float(scores.mean())
    w = torch.as_tensor(np.asarray(sample_weight), dtype=torch.double)
    return float((scores * w).sum() / w.sum())


#: ``multilabel_threshold="auto"`` tries these thresholds per label.
THRESHOLD_GRID = tuple(np.round(np.arange(0.05, 0.96, 0.05), 2))


def best_f1_thresholds(proba, y_valid):
    """Per label, the threshold of :data:`THRESHOLD_GRID` with the best validation F1 (0.5 without positives)."""
    y_valid = np.asarray(y_valid) > 0
    out = np.full(proba.shape[1], 0.5)
    for j in range(proba.shape[1]):
        positives = y_valid[:, j]
        if not positives.any():
            continue
        f1 = []
        for t in THRESHOLD_GRID:
            pred = proba[:, j] >= t
            tp = float((pred & positives).sum())
            f1.append(2 * tp / max(float(pred.sum() + positives.sum()), 1.0))
        # Ties: the threshold nearest 0.5.
        out[j] = min(zip(f1, THRESHOLD_GRID), key=lambda p: (-p[0], abs(p[1] - 0.5)))[1]
    return out
