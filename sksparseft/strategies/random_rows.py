"""random_rows: whole random rows of the transformer blocks' Linear weights (a structured random mask)."""

from __future__ import annotations

import torch

from ..model.layout import block_index
from ..model.mask import SparseMask
from .base import backbone_shapes, budget
from .options import options_from
from .token_sparse import TokenSparse, TokenSparseOptions

RandomRowsOptions = options_from(TokenSparseOptions, "min_layer", "cache_frozen", name="RandomRowsOptions")


class RandomRows(TokenSparse):
    """Whole output rows of each transformer Linear weight, drawn at random (S2FT-style structure).

    The budget is ``density`` of the backbone, as for ``random``, spread over the Linear weights
    of the trainable blocks so that each gets the same share of its rows. A Linear layer's
    weight gradient then covers only its chosen rows (the sparse backward forms a rows x
    columns block), where a random 1% of single entries touches nearly every row and column
    and costs a dense weight gradient (Yang et al. 2024, S2FT, for the structured idea).
    ``min_layer`` keeps the rows in blocks ``>= min_layer``, so the backward pass stops there;
    ``cache_frozen`` then runs the blocks below once per text.
    """

    name = "random_rows"
    trains = ("whole output rows of the transformer blocks' Linear weights, drawn at random, `density` of the "
              "backbone in all (S2FT-style): a small dense weight-gradient block, a cheaper backward")
    options = RandomRowsOptions

    def select(self, module, ctx):
        min_layer = self.settings.get("min_layer") or 0
        params = dict(module.encoder.named_parameters())
        names = [n for n, p in params.items() if n.endswith(".weight") and p.dim() == 2
                 and block_index(n) is not None and block_index(n) >= int(min_layer)]
        if not names:
            raise ValueError(f"strategy_options min_layer={min_layer} leaves no transformer block to train")
        share = budget(module, ctx.density) / sum(params[n].numel() for n in names)
        g = torch.Generator().manual_seed(0 if ctx.random_state is None else int(ctx.random_state))
        chosen = {}
        for n in names:
            n_rows, n_cols = params[n].shape
            rows = torch.randperm(n_rows, generator=g)[: max(1, round(share * n_rows))].sort().values
            chosen[n] = (rows[:, None] * n_cols + torch.arange(n_cols)).reshape(-1)
        return SparseMask(chosen, backbone_shapes(module))
