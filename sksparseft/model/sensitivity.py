"""Token-driven parameter sensitivity (fit stage "selection"): squared gradients focused on token groups."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from .batching import to_batch


def eligible_parameters(module):
    """Backbone tensors that may enter the mask by score.

    The word-embedding matrix is left out (its token-group rows are always
    trainable instead), and so is a pooler the pooling does not use.
    """
    emb = module.encoder.get_input_embeddings().weight
    names = []
    for name, p in module.encoder.named_parameters():
        if p is emb:
            continue
        if module.pooling != "pooler" and name.split(".")[0] == "pooler":
            continue
        names.append(name)
    return names


def sensitivity_scores(module, encodings, y, names, *, focus=None, n_samples=256, device="cpu", random_state=None, progress=None, kind=None):
    """Diagonal empirical Fisher of each named backbone tensor, one example at a time.

    Parameters
    ----------
    module : ClassifierModule
        With its head already initialised (a random head gives noisy gradients).
    encodings : dict of ndarray
        ``input_ids`` and ``attention_mask`` of the training texts.
    y : ndarray of int
    names : list of str
        Backbone tensors to score.
    focus : ndarray of 0/1, optional
        Positions covered by token groups. When given, only these positions pass
        gradient back, and examples are drawn among those that contain a group
        (with last-token pooling, only the latter).
    n_samples : int
    device : torch.device
    random_state : int or None
    progress : callable, optional
        Wraps the sample iterator (a tqdm bar when verbose).
    kind : SingleLabel or MultiLabel, optional
        The target kind whose loss is differentiated (default: one class per text). When
        ``encodings`` carry ``sample_weight``, each example's squared gradient is weighted
        by it and examples of weight zero are never drawn.

    Returns
    -------
    dict of str -> float32 CPU tensor shaped like the parameter.
    """
    rng = np.random.default_rng(random_state)
    weight = encodings.get("sample_weight")
    pool_idx = np.arange(len(y)) if weight is None else np.flatnonzero(np.asarray(weight) > 0)
    if focus is not None:
        covered = np.intersect1d(pool_idx, np.flatnonzero(focus.any(axis=1)))
        if covered.size:
            pool_idx = covered
        else:
            focus = None  # no text holds a group: plain Fisher
    take = rng.choice(pool_idx, size=min(n_samples, pool_idx.size), replace=False)
    take.sort()
    if module.pooling == "last":
        # All gradient enters at the last token, which is rarely a group position: detaching
        # the others would leave no gradient. The focus then acts through the examples only.
        focus = None

    params = dict(module.encoder.named_parameters())
    targets = [params[n] for n in names]
    scores = [torch.zeros_like(p, dtype=torch.float32) for p in targets]
    was_training = module.training
    module.eval()  # no dropout noise in the scores
    for p in targets:
        p.requires_grad_(True)
    try:
        items = progress(take) if progress else take
        for i in items:
            batch = to_batch(encodings, [i], device, focus=focus)
            logits = module(batch["input_ids"], batch["attention_mask"], focus=batch.get("focus"))
            if kind is None:
                loss = F.cross_entropy(logits, torch.as_tensor(y[[i]], device=device))
            else:
                loss = kind.loss(logits, kind.target_tensor(y[[i]], device=device))
            grads = torch.autograd.grad(loss, targets, allow_unused=True)
            for s, g in zip(scores, grads):
                if g is not None:
                    s.add_(g.detach().float().pow(2) if weight is None else g.detach().float().pow(2) * float(weight[i]))
    finally:
        for p in targets:
            p.requires_grad_(False)
        module.train(was_training)
    return {n: s.cpu() for n, s in zip(names, scores)}
