"""Unknown-intent rejection: the frozen backbone's linear probe decides what is out of scope.

Finetuning makes a model confident on texts of intents it never saw, so its own best-class
probability rejects few of them. The pretrained backbone's features are not shaped by the
training texts: a logistic regression on them (the linear probe) keeps the doubt a text of an
unseen intent should raise, and its scores on held-out texts are honest. ``predict`` takes the
class from the fitted model and rejects a text when the probe's best-class probability is below
the threshold.

The threshold of ``unknown_threshold="auto"`` comes from out-of-fold scores: the probe is fitted
on all but one fold of the training texts and scores the held-out fold, over every fold, so
every in-scope text of ``fit`` calibrates it (not only the validation split, which at 10 texts
per class holds one per class). The threshold is the conformal quantile of those scores. Under
exchangeable texts, a new text scored by a probe fitted without it would be accepted with
probability at least the target; the final probe is fitted on every text (cross-conformal,
not split-conformal), so this is an approximation, not a theorem, and measured rather than
assumed (docs/unknown.md).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from .training import fit_linear_probe

#: ``unknown_threshold="auto"`` keeps this share of in-scope texts accepted.
UNKNOWN_ACCEPTED = 0.95
#: Folds of the out-of-fold calibration (fewer when a class has fewer texts).
N_FOLDS = 5


def frozen_copy(encoder, n_classes, pooling):
    """A frozen copy of ``encoder`` behind pooling and an (unfitted) head: the rejector."""
    from ..model.module import ClassifierModule

    rejector = ClassifierModule(copy.deepcopy(encoder), n_classes, pooling=pooling, dropout=0.0)
    for p in rejector.parameters():
        p.requires_grad_(False)
    return rejector.eval()


def best_known(proba, unknown=()):
    """The best probability among the known classes (columns ``unknown``, labelled out-of-scope texts, left out).

    A text the probe puts in the unknown class thereby scores low and is rejected.
    """
    proba = np.asarray(proba)
    if len(unknown):
        proba = np.delete(proba, list(unknown), axis=1)
    return proba.max(axis=1)


def out_of_fold_scores(features, y_enc, n_classes, *, unknown=(), class_weight=None, sample_weight=None, seed=0):
    """The probe's best known-class probability of every text, from a probe fitted without its fold."""
    from sklearn.model_selection import KFold, StratifiedKFold

    y_enc = np.asarray(y_enc)
    n = len(y_enc)
    smallest = int(np.bincount(y_enc, minlength=n_classes)[np.unique(y_enc)].min())
    k = min(N_FOLDS, n)
    folds = (StratifiedKFold(min(k, smallest), shuffle=True, random_state=seed) if smallest >= 2
             else KFold(k, shuffle=True, random_state=seed))
    fold_of = np.empty(n, dtype=int)
    for f, (_, held_idx) in enumerate(folds.split(features, y_enc)):
        fold_of[held_idx] = f
    # Copies of one text share their first copy's fold: a probe that saw a copy would call it known.
    _, first, inverse = np.unique(features, axis=0, return_index=True, return_inverse=True)
    fold_of = fold_of[first[inverse.ravel()]]
    scores = np.empty(n)
    head = torch.nn.Linear(features.shape[1], n_classes)
    for f in np.unique(fold_of):
        held_idx, fit_idx = np.flatnonzero(fold_of == f), np.flatnonzero(fold_of != f)
        if not len(fit_idx):  # every text is one text: no probe can leave it out
            fit_idx = held_idx
        fit_linear_probe(head, features[fit_idx], y_enc[fit_idx], class_weight=class_weight,
                         sample_weight=None if sample_weight is None else np.asarray(sample_weight)[fit_idx])
        with torch.no_grad():
            logits = head(torch.as_tensor(features[held_idx], dtype=torch.float32))
        scores[held_idx] = best_known(torch.softmax(logits, dim=1).numpy(), unknown)
    return scores


def conformal_threshold(scores, accepted=UNKNOWN_ACCEPTED):
    """The threshold that accepts a new exchangeable score with probability >= ``accepted``.

    The ``floor((1 - accepted) * (n + 1))``-th smallest score (split conformal); 0 (accept all)
    when there are too few scores to reject any.
    """
    scores = np.sort(np.asarray(scores, dtype=float))
    # Rounded first: (1 - 0.9) * 40 is 3.9999999999999996 in floats, and its floor would be one short.
    k = math.floor(round((1.0 - accepted) * (len(scores) + 1), 9))
    return float(scores[k - 1]) if k >= 1 else 0.0


def fit_rejector(rejector, features, y_enc, *, threshold, unknown=(), class_weight=None, sample_weight=None, seed=0,
                 sync=None):
    """Fit ``rejector``'s head as the linear probe on ``features``; the rejection threshold.

    ``threshold="auto"``: the conformal threshold of the out-of-fold scores of the in-scope
    texts (every text when all are labelled unknown). ``sync`` makes every process of a
    data-parallel fit reject alike, whatever its float noise (process 0's head and threshold).
    """
    fit_linear_probe(rejector.head, features, y_enc, class_weight=class_weight, sample_weight=sample_weight)
    if sync is not None:
        rejector.head.load_state_dict(sync({k: v.cpu() for k, v in rejector.head.state_dict().items()}))
    if threshold != "auto":
        return float(threshold)
    n_classes = rejector.head.out_features
    scores = out_of_fold_scores(features, y_enc, n_classes, unknown=unknown, class_weight=class_weight,
                                sample_weight=sample_weight, seed=seed)
    in_scope = ~np.isin(y_enc, unknown)
    threshold = conformal_threshold(scores[in_scope] if in_scope.any() else scores)
    return sync(threshold) if sync is not None else threshold


def reject(labels, scores, unknown_label, threshold):
    """``labels`` with ``unknown_label`` wherever the score is below ``threshold`` or the label is already it."""
    rejected = scores < threshold
    rejected |= np.asarray([c == unknown_label for c in labels.tolist()], dtype=bool)
    if not rejected.any():
        return labels
    labels = labels.astype(object) if labels.dtype.kind in "UO" else labels.copy()
    labels[rejected] = unknown_label
    return labels
