"""Whole output rows of the transformer blocks' Linear weights: the structured budget that
``random_rows`` draws at random and ``token_sparse``/``fisher`` with ``rows=True`` choose by score.

The budget is ``density`` of the backbone, spread over the Linear weights of the trainable blocks
so that each gets the same share of its rows. A Linear layer's weight gradient then covers only
its chosen rows (the sparse backward forms a rows x columns block).
"""

from __future__ import annotations

import torch

from ..model.layout import block_index
from ..model.mask import SparseMask
from .base import backbone_shapes, budget


def linear_weights(module, min_layer=None):
    """Names of the 2-D weights of the transformer blocks ``>= min_layer``, in the encoder's order."""
    low = int(min_layer or 0)
    names = [n for n, p in module.encoder.named_parameters()
             if n.endswith(".weight") and p.dim() == 2 and block_index(n) is not None and block_index(n) >= low]
    if not names:
        raise ValueError(f"strategy_options min_layer={min_layer} leaves no transformer block to train")
    return names


def rows_mask(module, names, density, pick, always=None):
    """A mask of whole rows: ``pick(name, n_rows, k)`` gives the ``k`` rows of weight ``name`` to train.

    Each weight gets ``max(1, round(share * n_rows))`` rows, ``share`` the budget over the weights'
    entries; ``always`` (name -> flat indices) is added whole, on top of the budget.
    """
    params = dict(module.encoder.named_parameters())
    share = budget(module, density) / sum(params[n].numel() for n in names)
    chosen = dict(always or {})
    for n in names:
        n_rows, n_cols = params[n].shape
        rows = torch.as_tensor(pick(n, n_rows, max(1, round(share * n_rows)))).sort().values
        chosen[n] = (rows[:, None] * n_cols + torch.arange(n_cols)).reshape(-1)
    return SparseMask(chosen, backbone_shapes(module))


def top_rows(scores):
    """``pick`` for :func:`rows_mask`: the rows whose entries' scores add up highest."""
    return lambda name, n_rows, k: scores[name].sum(dim=1).topk(k).indices
