"""Batches of encoded texts with dynamic padding (each batch trimmed to its longest text)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import default_collate


def to_batch(encodings, rows, device, focus=None):
    """Tensors for ``rows`` of ``encodings``, trimmed to the longest of those rows."""
    rows = np.asarray(rows)
    mask = encodings["attention_mask"][rows]
    width = max(int(mask.sum(axis=1).max()), 1)
    batch = {
        "input_ids": torch.as_tensor(encodings["input_ids"][rows, :width], device=device),
        "attention_mask": torch.as_tensor(mask[:, :width], device=device),
    }
    if focus is not None:
        batch["focus"] = torch.as_tensor(focus[rows, :width], device=device)
    return batch


def trim_collate(items):
    """``collate_fn`` for skorch's DataLoaders: stack, then cut the shared padding."""
    X, y = default_collate(items)
    width = max(int(X["attention_mask"].sum(dim=1).max()), 1)
    X = {k: v[:, :width] for k, v in X.items()}
    return X, y


def length_sorted_batches(encodings, batch_size):
    """Row indices in batches of similar length (less padding); callers restore order."""
    lengths = encodings["attention_mask"].sum(axis=1)
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
