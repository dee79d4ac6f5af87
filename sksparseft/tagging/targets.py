"""The tagger's target kind (its loss, read by training and sensitivity) and its scores.

A text's target is one int row, ``[intent, tag of piece 0, tag of piece 1, ...]``, with
:data:`~sksparseft.tagging.data.IGNORE` where nothing is scored (no intent head, pieces after a
word's first, special tokens, padding), so the strategies' sensitivity scores differentiate the
same loss as training. Scores are entity-level micro-F1 over slots (``seqeval``, the field's
library) and intent accuracy.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import make_scorer
from torch.nn import functional as F

from .data import IGNORE, OUTSIDE, as_iob2, is_joint, tag_scheme


class TokenTags:
    """Tags per piece (softmax per token), and with a sentence head, an intent per text."""

    multilabel = False

    def loss(self, output, target, class_weight=None, sample_weight=None):
        """Mean cross-entropy over tagged pieces, plus the intent's cross-entropy in the joint mode."""
        tokens, intents = output if isinstance(output, tuple) else (output, None)
        width = tokens.shape[1]
        tags = target[:, 1:1 + width]
        loss = F.cross_entropy(tokens.reshape(-1, tokens.shape[-1]).float(), tags.reshape(-1), ignore_index=IGNORE)
        if not torch.isfinite(loss):  # no tagged piece in the batch (every word cut by max_length)
            loss = tokens.sum() * 0.0
        if intents is not None and (target[:, 0] != IGNORE).any():
            loss = loss + F.cross_entropy(intents.float(), target[:, 0], ignore_index=IGNORE)
        return loss

    def target_tensor(self, y, device=None):
        return torch.as_tensor(np.asarray(y), dtype=torch.long, device=device)


def slot_f1_score(y_true, y_pred):
    """Entity-level micro-F1 of tag lists (``seqeval``); joint ``(intent, tags)`` pairs score their tags.

    A span counts when its type and both ends match. Plain labels (not IOB2) are read as runs: each
    run of one label is one span. With no span in either, 1.0.
    """
    from seqeval.metrics import f1_score

    true, pred = _tags_only(y_true), _tags_only(y_pred)
    if len(true) != len(pred):
        raise ValueError(f"y_true holds {len(true)} texts, y_pred {len(pred)}")
    if not any(t != OUTSIDE for row in true + pred for t in row):
        return 1.0
    scheme = tag_scheme(true + pred)
    return float(f1_score(as_iob2(true, scheme), as_iob2(pred, scheme), mode=None, zero_division=0))


def intent_accuracy_score(y_true, y_pred):
    """Share of texts whose predicted intent is theirs (joint ``(intent, tags)`` pairs)."""
    true, pred = list(y_true), list(y_pred)
    if not true:
        return 0.0
    return float(np.mean([t[0] == p[0] for t, p in zip(true, pred)]))


def frame_accuracy_score(y_true, y_pred):
    """Share of texts whose intent and every tag are right (sentence-level semantic frame accuracy)."""
    true, pred = list(y_true), list(y_pred)
    if not true:
        return 0.0
    return float(np.mean([tuple(t[0:1]) == tuple(p[0:1]) and list(t[1]) == list(p[1]) for t, p in zip(true, pred)]))


def _tags_only(rows):
    rows = list(rows)
    return [[str(t) for t in r[1]] for r in rows] if is_joint(rows) else [[str(t) for t in r] for r in rows]


#: scorers for ``cross_val_score`` / ``GridSearchCV(scoring=...)``
slot_f1_scorer = make_scorer(slot_f1_score)
intent_accuracy_scorer = make_scorer(intent_accuracy_score)
