"""token_sparse (the method): top-density entries by sensitivity focused on token groups, plus their embedding rows."""

from __future__ import annotations

import torch

from ..mask import SparseMask
from ..sensitivity import eligible_parameters, sensitivity_scores
from ..tokens import group_token_ids
from .base import MaskStrategy, backbone_shapes, budget


def _embedding_rows(module, groups):
    emb = module.encoder.get_input_embeddings().weight
    name = next(n for n, p in module.encoder.named_parameters() if p is emb)
    rows = torch.as_tensor(group_token_ids(groups), dtype=torch.long)
    if not rows.numel():
        return {}
    hidden = emb.shape[1]
    return {name: (rows[:, None] * hidden + torch.arange(hidden)).reshape(-1)}


class TokenSparse(MaskStrategy):
    """Token-driven sparse finetuning: diagonal Fisher through token-group positions only."""

    name = "token_sparse"
    default_learning_rate = 1e-3
    options = {"embedding_rows": True}
    token_focus = True

    def select(self, module, ctx):
        names = eligible_parameters(module)
        scores = sensitivity_scores(
            module, ctx.encodings, ctx.y, names, focus=ctx.focus if self.token_focus else None,
            n_samples=ctx.n_sensitivity_samples, device=ctx.device, random_state=ctx.random_state,
            progress=ctx.progress,
        )
        always = _embedding_rows(module, ctx.groups) if self.settings.get("embedding_rows") else {}
        return SparseMask.from_scores(scores, budget(module, ctx.density), backbone_shapes(module), always=always)
