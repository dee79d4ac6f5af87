"""Token views: a text seen with some of its tokens masked out, the token groups kept (lab only).

A view drops each position outside ``keep`` (0/1 per position: the token-group positions and
the special tokens, or only the special tokens) from the attention mask with probability
``drop``. The leads ``TokenViews`` (cross-entropy on views) and ``ContrastiveGroupViews`` (the
contrastive stage on views) use them; the package trains on whole texts.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sksparseft.fit.contrastive import class_batches, supcon_loss
from sksparseft.model.batching import to_batch, trim_collate

# The package's chunk of a class-balanced batch (sksparseft.fit.contrastive).
_CHUNK = 8


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
    b = to_batch(encodings, rows, device, focus=keep)
    mask = b["attention_mask"]
    if view_drop > 0 and keep is not None:
        mask = view_mask(mask, b["focus"], view_drop)
    return module.features(b["input_ids"], mask)


def train_contrastive_views(module, encodings, y, *, epochs, batch_size, learning_rate, weight_decay, device,
                            temperature=0.05, per_class=4, keep=None, view_drop=0.0, random_state=None, progress=None):
    """The package's ``train_contrastive`` with every text seen as a view (``keep``, ``view_drop``).

    A lab copy of :func:`sksparseft.fit.contrastive.train_contrastive` (same batches, same
    random draws in the same order) plus the view: positions outside ``keep`` are masked out at
    random with probability ``view_drop``. ``view_drop=0`` gives the package's loop.
    """
    rng = np.random.default_rng(random_state)
    y = np.asarray(y)
    slots = y if y.ndim == 1 else np.where(y.any(axis=1), y.argmax(axis=1), y.shape[1])
    params = [p for n, p in module.named_parameters() if p.requires_grad and not n.startswith("head.")]
    classes_per_batch = max(batch_size // per_class, 2)
    if not params or len(y) == 0:
        return []
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    lengths = np.asarray(encodings["attention_mask"]).sum(axis=1)
    was_training = module.training
    module.train()
    losses = []
    try:
        for _ in range(epochs):
            batches = class_batches(slots, classes_per_batch, per_class, rng)
            if not batches:
                return []
            total = 0.0
            for rows in progress(batches) if progress else batches:
                rows = rows[np.argsort(lengths[rows], kind="stable")]
                features = torch.cat([_view_features(module, encodings, part, device, keep, view_drop)
                                      for part in np.array_split(rows, math.ceil(len(rows) / _CHUNK))])
                loss = supcon_loss(features, torch.as_tensor(y[rows], device=device), temperature)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                total += float(loss.detach())
            losses.append(total / len(batches))
    finally:
        module.train(was_training)
        optimizer.zero_grad(set_to_none=True)
    return losses
