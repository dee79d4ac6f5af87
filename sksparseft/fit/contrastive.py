"""Supervised contrastive training of what the strategy trains (fit stage "contrastive").

Before the cross-entropy finetune, the selected entries (or adapters) are trained so that
texts of one class pool to nearby vectors and texts of different classes apart: the
supervised contrastive loss of Khosla et al. (2020) over L2-normalised pooled features,
in batches of a few texts from each of several classes, so that every text has positives.
Few-shot intent detectors gain most from this objective (CPFT, Zhang et al. 2021; SetFit,
Tunstall et al. 2022). The head takes no part; it is refit on the new features afterwards.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from ..model.batching import to_batch


def supcon_loss(features, labels, temperature, weights=None):
    """Supervised contrastive loss of a batch; anchors without a positive in the batch are left out.

    Parameters
    ----------
    features : tensor (n, d)
        Pooled features (normalised here).
    labels : tensor (n,) of int, or (n, n_labels) of 0/1
        Class of each text; for multi-label rows, two texts are positives when they share a label.
    temperature : float
    weights : tensor (n,) of non-negative floats, optional
        Per-text weights, read as repetitions (as ``sample_weight``): a text of weight ``w``
        counts ``w`` times among every other anchor's positives and negatives and as an anchor;
        weight 0 is the text left out of the batch.

    Returns
    -------
    Scalar tensor; zero (with gradient) when no text of the batch has a positive.
    """
    if weights is not None:
        return _weighted_supcon_loss(features, labels, temperature, weights)
    z = F.normalize(features.float(), dim=-1)
    n = z.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
    if labels.dim() == 2:
        shared = labels.float() @ labels.float().T > 0
    else:
        shared = labels[:, None] == labels[None, :]
    positive = shared & ~self_mask
    anchors = positive.any(dim=1)
    if not bool(anchors.any()):
        return z.sum() * 0.0
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos_log_prob = log_prob.masked_fill(~positive, 0.0).sum(dim=1)
    return -(pos_log_prob[anchors] / positive.sum(dim=1)[anchors]).mean()


def _weighted_supcon_loss(features, labels, temperature, weights):
    z = F.normalize(features.float(), dim=-1)
    n = z.shape[0]
    w = torch.as_tensor(weights, dtype=z.dtype, device=z.device)
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
    shared = labels.float() @ labels.float().T > 0 if labels.dim() == 2 else labels[:, None] == labels[None, :]
    positive = (shared & ~self_mask).float() * w[None, :]  # each positive counts its weight
    counts = positive.sum(dim=1)
    anchors = (counts > 0) & (w > 0)
    if not bool(anchors.any()):
        return z.sum() * 0.0
    log_prob = sim - torch.logsumexp(sim + torch.log(w)[None, :], dim=1, keepdim=True)
    pos_log_prob = (log_prob.masked_fill(positive == 0, 0.0) * positive).sum(dim=1)
    per_anchor = pos_log_prob[anchors] / counts[anchors]
    return -(w[anchors] * per_anchor).sum() / w[anchors].sum()


# A class-balanced batch mixes lengths: its forward runs in length-sorted chunks of this many
# texts, each trimmed to its own longest text, instead of padding every text to the batch's longest.
_CHUNK = 8


def pooled_features(module, encodings, rows, device):
    """The module's pooled features of the encoded texts ``rows`` (with gradients): what the loss compares."""
    b = to_batch(encodings, rows, device)
    return module.features(b["input_ids"], b["attention_mask"])


def class_batches(y, classes_per_batch, per_class, rng):
    """One epoch of batches of row indices: every row once, in groups of ``per_class`` rows of one class.

    Each class's rows are shuffled and cut into groups of ``per_class`` (a lone last row joins
    the group before it, so that every row has a positive); each class's groups are spread
    evenly over the epoch at a random offset (so that a batch mixes classes and has
    negatives) and packed ``classes_per_batch`` to a batch. An epoch therefore visits each row
    exactly once, whatever the class sizes (classes drawn uniformly would over-visit small
    classes, and with few classes an epoch would see a fraction of the data). Rows of a class
    with a single row have no positive and are left out.
    """
    y = np.asarray(y)
    groups, keys = [], []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        if len(rows) < 2:
            continue
        parts = [rows[i:i + per_class] for i in range(0, len(rows), per_class)]
        if len(parts[-1]) < 2:
            last = parts.pop()
            parts[-1] = np.concatenate([parts[-1], last])
        groups.extend(parts)
        keys.extend((np.arange(len(parts)) + rng.uniform()) / len(parts))
    order = np.argsort(keys, kind="stable")
    return [np.concatenate([groups[i] for i in order[j:j + classes_per_batch]])
            for j in range(0, len(order), classes_per_batch)]


def _process_group(distributed):
    """``(world size, rank)`` of the data-parallel fit (``(1, 0)`` when not distributed)."""
    if not distributed:
        return 1, 0
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return 1, 0
    return dist.get_world_size(), dist.get_rank()


def _batch_vectors(module, encodings, rows, device, features):
    """Features of ``rows`` (length-sorted), in chunks each trimmed to its own longest text."""
    return torch.cat([features(module, encodings, part, device)
                      for part in np.array_split(rows, math.ceil(len(rows) / _CHUNK))])


def _gathered_vectors(module, encodings, shards, rank, device, features):
    """The whole batch's features in every process, each process computing its own shard.

    Other processes' features arrive without gradient; this process's keep theirs. The loss of
    the whole batch is then the same number everywhere, each process's backward gives the
    gradient through its own shard, and the sum over processes is the single-process gradient.
    """
    import torch.distributed as dist

    own = shards[rank]
    dim = module.head.in_features
    local = (_batch_vectors(module, encodings, own, device, features) if len(own)
             else torch.zeros((0, dim), device=device, requires_grad=True))
    width = max(len(s) for s in shards)
    padded = torch.zeros((width, local.shape[1]), dtype=local.dtype, device=local.device)
    padded[: len(own)] = local.detach()
    boxes = [torch.empty_like(padded) for _ in shards]
    dist.all_gather(boxes, padded)
    parts = [local if r == rank else boxes[r][: len(s)] for r, s in enumerate(shards)]
    return torch.cat(parts)


def _sum_gradients(params):
    """Every process's gradients added up (each holds the gradient through its own shard)."""
    import torch.distributed as dist

    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def train_contrastive(module, encodings, y, *, epochs, batch_size, learning_rate, weight_decay, device,
                      temperature=0.05, per_class=4, random_state=None, progress=None, features=pooled_features,
                      distributed=False, sample_weight=None, max_steps=None):
    """Train ``module``'s trainable tensors other than the head on the supervised contrastive loss.

    An epoch visits every text once (:func:`class_batches`), in batches of about
    ``batch_size`` texts: groups of ``per_class`` texts of one class, ``batch_size // per_class``
    groups to a batch. AdamW, gradients clipped to norm 1, constant rate. Returns the
    mean loss of each epoch (an empty list when no class has two texts). A 2-D 0/1 ``y``
    (multi-label) draws batches by each text's first label; texts sharing any label are positives.
    ``features(module, encodings, rows, device)`` makes the compared vectors (a view of each text,
    an augmentation: pass your own). ``distributed``: in a data-parallel fit (torch.distributed
    initialised), every process draws the same batches (same ``random_state``), computes the
    features of its share of each batch, and all compare the whole batch: the processes take
    identical steps, each batch the single-process step. ``sample_weight`` (one per row of
    ``encodings``) weighs each text in the loss (:func:`supcon_loss`); the batches are drawn
    without it. ``max_steps`` ends the stage after that many optimiser steps over all its epochs
    (the last epoch run is then cut short: its batches spread each class evenly, so the steps run
    visit about the same share of every class); None runs every epoch whole.
    """
    world, rank = _process_group(distributed)
    rng = np.random.default_rng(random_state)
    y = np.asarray(y)
    sample_weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float32)
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
    steps_left = math.inf if max_steps is None else int(max_steps)
    try:
        for _ in range(epochs):
            if steps_left <= 0:
                break
            batches = class_batches(slots, classes_per_batch, per_class, rng)
            if not batches:
                return []
            batches = batches[: steps_left] if steps_left < len(batches) else batches
            steps_left -= len(batches)
            total = 0.0
            for rows in progress(batches) if progress else batches:
                rows = rows[np.argsort(lengths[rows], kind="stable")]
                if world > 1:
                    shards = [rows[r::world] for r in range(world)]
                    vectors = _gathered_vectors(module, encodings, shards, rank, device, features)
                    rows = np.concatenate(shards)  # the order of the gathered vectors
                else:
                    vectors = _batch_vectors(module, encodings, rows, device, features)
                weights = None if sample_weight is None else torch.as_tensor(sample_weight[rows], device=device)
                loss = supcon_loss(vectors, torch.as_tensor(y[rows], device=device), temperature, weights)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if world > 1:
                    _sum_gradients(params)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                total += float(loss.detach())
            losses.append(total / len(batches))
    finally:
        module.train(was_training)
        optimizer.zero_grad(set_to_none=True)  # no gradient of this stage reaches the next one
    return losses
