"""Token views: a text seen with some of its tokens masked out, the token groups kept (lab only).

A view drops each position outside ``keep`` (0/1 per position: the token-group positions and
the special tokens, or only the special tokens) from the attention mask with probability
``drop``. The leads ``TokenViews`` (cross-entropy on views: ``ViewCollate``) and
``ContrastiveGroupViews`` (the contrastive stage on views: ``_view_features``) use them; the
package trains on whole texts.
"""

from __future__ import annotations

import numpy as np
import torch

from sksparseft.model.batching import to_batch, trim_collate


def view_mask(attention_mask, keep, drop):
    """``attention_mask`` with each position outside ``keep`` masked out with probability ``drop``."""
    dropped = (torch.rand(attention_mask.shape, device=attention_mask.device) < drop) & (keep == 0)
    return attention_mask * (~dropped).to(attention_mask.dtype)


def kept_positions(state, groups=True):
    """0/1 per position of the training part: what a view never drops.

    The special tokens, and with ``groups`` the token-group positions of the fit.
    """
    special = np.isin(state.train_encodings["input_ids"], list(state.tokenizer.all_special_ids))
    keep = special.astype(np.int64)
    if groups and state.focus is not None:
        keep |= state.focus.astype(np.int64)
    return keep


class ViewCollate:
    """``collate_fn`` of the training batches: the package's ``trim_collate``, then a view of each text.

    The batch carries ``keep`` (0/1 per position, trimmed with the rest); it is used here and
    never reaches the module. One ``torch.rand`` per batch, where the view module of earlier
    versions of the lead drew it (at the start of the training forward), so the draws are the same.
    """

    def __init__(self, drop):
        self.drop = drop

    def __call__(self, items):
        X, y = trim_collate(items)
        keep = X.pop("keep")
        if self.drop > 0:
            X["attention_mask"] = view_mask(X["attention_mask"], keep, self.drop)
        return X, y


def _view_features(module, encodings, rows, device, keep, view_drop):
    """The pooled features of a view of the texts ``rows``: ``features`` of the package's ``train_contrastive``.

    Bound to ``keep`` and ``view_drop`` (``functools.partial``), it replaces the package's
    ``pooled_features``: positions outside ``keep`` are masked out at random with probability
    ``view_drop`` (``view_drop=0`` or ``keep=None``: the package's features).
    """
    b = to_batch(encodings, rows, device, focus=keep)
    mask = b["attention_mask"]
    if view_drop > 0 and keep is not None:
        mask = view_mask(mask, b["focus"], view_drop)
    return module.features(b["input_ids"], mask)
