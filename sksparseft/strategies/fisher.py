"""fisher: the same sparse training, mask from plain gradient sensitivity (all positions, no token rows)."""

from __future__ import annotations

from .options import options_from
from .token_sparse import TokenSparse, TokenSparseOptions

FisherOptions = options_from(TokenSparseOptions, "density", "n_sensitivity_samples", "embedding_rows", "min_layer", "cache_frozen", "rows",
                             "ce_min_layer", name="FisherOptions", embedding_rows=False)


class Fisher(TokenSparse):
    """FISH-style mask (Sung et al. 2021): the token-focus ablation of ``token_sparse``."""

    name = "fisher"
    trains = ("the top `density` backbone entries by plain Fisher (all positions), no embedding rows: "
              "the token-focus ablation of `token_sparse`")
    options = FisherOptions
    token_focus = False
