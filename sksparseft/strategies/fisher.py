"""fisher: the same sparse training, mask from plain gradient sensitivity (all positions, no token rows)."""

from __future__ import annotations

from .token_sparse import TokenSparse


class Fisher(TokenSparse):
    """FISH-style mask (Sung et al. 2021): the token-focus ablation of ``token_sparse``."""

    name = "fisher"
    options = {"embedding_rows": False}
    token_focus = False
