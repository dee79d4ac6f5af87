"""Weight interpolation between the start of the finetune and its end (WiSE-FT).

Wortsman et al. (2022), "Robust fine-tuning of zero-shot models": the straight line
between the starting weights and the finetuned ones often holds models better than
either end. Here the start is where the cross-entropy finetune began (LP-FT): the trainable
tensors (sparse delta, tensors trained whole, adapters) as the contrastive stage left them
(``contrastive_epochs > 0``, the default), or at their start, a zero delta on the frozen
backbone (``contrastive_epochs=0``), with the linear probe fitted on those features as the
head. The line blends the two states of the trainable tensors and the two heads; ``a = 0``
is that start, ``a = 1`` the finetune as trained. ``a`` is chosen on the
validation split, coarse grid first, then the two midpoints next to the best point.
"""

import numpy as np
import torch
import torch.nn.functional as F

from .targets import weighted_score
from ..model.inference import run_inference

COARSE_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


@torch.no_grad()
def load_interpolated_(module, start, end, a):
    """Load ``(1 - a) * start + a * end`` into ``module``'s trainable tensors."""
    for n in end:  # one tensor at a time: a full finetune's blend never exists twice in memory
        module.load_trainable_state_({n: torch.lerp(start[n], end[n], float(a))})


def validation_scores(module, data, batch_size, device, kind=None):
    """(accuracy, mean log-loss) of ``module`` on ``data = (encodings, y)``.

    For a multi-label ``kind`` (:mod:`sksparseft.fit.targets`), the Jaccard index and the summed
    binary log-loss; both weighted when the encodings carry ``sample_weight``.
    """
    X, y = data
    logits = torch.from_numpy(run_inference(module, X, batch_size, device)).double()
    weight = X.get("sample_weight")
    if kind is None or (weight is None and not kind.multilabel):
        t = torch.as_tensor(np.asarray(y), dtype=torch.long)
        acc = float((logits.argmax(dim=1) == t).double().mean())
        return acc, float(F.cross_entropy(logits, t))
    t = kind.target_tensor(y)
    w = None if weight is None else torch.as_tensor(np.asarray(weight), dtype=torch.double)
    return weighted_score(kind, logits, t, weight), float(kind.loss(logits, t, sample_weight=w))


def validation_scorer(data, batch_size, device, kind=None):
    """``score(module)``: :func:`validation_scores` of the module as loaded on ``data``; None without data."""
    if data is None:
        return None
    return lambda module: validation_scores(module, data, batch_size, device, kind=kind)


def select_interpolation(module, start, end, score, known=None):
    """Choose ``a`` in [0, 1] by validation accuracy (ties: lower log-loss, then larger ``a``).

    ``score(module)`` gives the validation ``(accuracy, log-loss)`` of the module as loaded
    (:func:`validation_scorer`); ``known`` maps already measured points to theirs. Leaves the
    chosen blend loaded in ``module`` and returns ``(a, {a: (accuracy, log-loss)})``.
    """
    scores = dict(known or {})

    def measure(points):
        for a in points:
            if a not in scores:
                load_interpolated_(module, start, end, a)
                scores[a] = score(module)

    def best():
        return max(scores, key=lambda a: (scores[a][0], -scores[a][1], a))

    measure(COARSE_GRID)
    a = best()
    measure([m for m in (a - 0.125, a + 0.125) if 0.0 < m < 1.0])
    a = best()
    load_interpolated_(module, start, end, a)
    return a, dict(sorted(scores.items()))
