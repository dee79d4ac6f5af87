"""Batches of encoded texts with dynamic padding (each batch trimmed to its longest text)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, default_collate


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
    X = {k: v[:, :width] if v.dim() == 2 else v for k, v in X.items()}  # per-text values (weights) stay
    return X, y


def length_sorted_batches(encodings, batch_size):
    """Row indices in batches of similar length (less padding); callers restore order."""
    lengths = encodings["attention_mask"].sum(axis=1)
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class LengthBucketSampler(Sampler):
    """Random batches of similar length: shuffle, sort within pools of ``pool`` batches, shuffle batches.

    Less padding per batch (dynamic padding trims it) for nearly the randomness of plain shuffling.
    """

    def __init__(self, lengths, batch_size, shuffle=True, drop_last=False, pool=50, generator=None):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.pool = pool
        self.generator = generator

    def _batches(self):
        n = len(self.lengths)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).numpy()
        else:
            order = np.arange(n)
        span = self.batch_size * self.pool
        batches = []
        for start in range(0, n, span):
            chunk = order[start : start + span]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            perm = torch.randperm(len(batches), generator=self.generator).tolist()
            batches = [batches[i] for i in perm]
        return batches

    def __iter__(self):
        for b in self._batches():
            yield b.tolist()

    def __len__(self):
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class BucketLoader(DataLoader):
    """DataLoader for skorch's ``iterator_train`` that batches texts of similar length together.

    skorch passes ``batch_size`` and ``shuffle``; they are turned into a
    :class:`LengthBucketSampler` over the dataset's attention masks.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, generator=None, **kwargs):
        lengths = _dataset_lengths(dataset)
        sampler = LengthBucketSampler(lengths, batch_size, shuffle=shuffle, drop_last=drop_last, generator=generator)
        super().__init__(dataset, batch_sampler=sampler, **kwargs)


def _dataset_lengths(dataset):
    X = getattr(dataset, "X", None)
    if isinstance(X, dict) and "attention_mask" in X:
        return np.asarray(X["attention_mask"]).sum(axis=1)
    raise TypeError("BucketLoader needs a skorch Dataset whose X is a dict with an attention_mask")
