"""random_rows: whole random rows of the transformer blocks' Linear weights (a structured random mask)."""

from __future__ import annotations

import torch

from .options import options_from
from .rows import linear_weights, rows_mask
from .token_sparse import TokenSparse, TokenSparseOptions

RandomRowsOptions = options_from(TokenSparseOptions, "density", "min_layer", "cache_frozen", "ce_min_layer",
                                  name="RandomRowsOptions")


class RandomRows(TokenSparse):
    """Whole output rows of each transformer Linear weight, drawn at random (S2FT-style structure).

    The budget is ``density`` of the backbone, as for ``random``, spread over the Linear weights
    of the trainable blocks so that each gets the same share of its rows (:mod:`.rows`). A Linear
    layer's weight gradient then covers only its chosen rows, where a random 1% of single entries
    touches nearly every row and column and costs a dense weight gradient (Yang et al. 2024,
    S2FT, for the structured idea). The random control of ``token_sparse`` with ``rows=True``.
    ``min_layer`` keeps the rows in blocks ``>= min_layer``, so the backward pass stops there;
    ``cache_frozen`` then runs the blocks below once per text.
    """

    name = "random_rows"
    trains = ("whole output rows of the transformer blocks' Linear weights, drawn at random, `density` of the "
              "backbone in all (S2FT-style): a small dense weight-gradient block, a cheaper backward")
    options = RandomRowsOptions

    def select(self, module, ctx):
        g = torch.Generator().manual_seed(0 if ctx.random_state is None else int(ctx.random_state))
        return rows_mask(module, linear_weights(module, self.settings.get("min_layer")), self.settings["density"],
                         lambda name, n_rows, k: torch.randperm(n_rows, generator=g)[:k])
