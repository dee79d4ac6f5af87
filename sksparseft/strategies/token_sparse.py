"""token_sparse (the method): top-density entries by sensitivity focused on token groups, plus their embedding rows."""

from __future__ import annotations

import torch

from ..model.layout import block_index, transformer_blocks
from ..model.mask import SparseMask
from ..model.sensitivity import eligible_parameters, sensitivity_scores
from ..text.tokens import group_token_ids
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
    # min_layer: only blocks >= this index (and no embedding rows) may be selected, so the
    # backward pass stops there; a cost lever, off by default (None). cache_frozen: with
    # min_layer, the frozen blocks below it run once per text (without dropout), not once per
    # epoch; off by default: it measured 1-2 points less accurate (docs/gpu.md).
    options = {"embedding_rows": True, "min_layer": None, "cache_frozen": False}
    token_focus = True

    def validate(self):
        for key in ("embedding_rows", "cache_frozen"):
            if key in self.settings:
                self._check_bool(key)
        if "min_layer" in self.settings:
            self._check_int("min_layer", 0, allow_none=True)

    def frozen_blocks(self, module):
        min_layer = self.settings.get("min_layer")
        if not min_layer or not self.settings.get("cache_frozen"):
            return 0
        blocks = transformer_blocks(module.encoder)
        if blocks is None or int(min_layer) >= len(blocks):
            return 0  # select() says what is wrong with min_layer
        return int(min_layer)

    def select(self, module, ctx):
        names = eligible_parameters(module)
        min_layer = self.settings.get("min_layer")
        if min_layer is not None:
            min_layer = int(min_layer)
            names = [n for n in names if block_index(n) is not None and block_index(n) >= min_layer]
            if not names:
                raise ValueError(f"strategy_options min_layer={min_layer} leaves no transformer block to train")
        scores = sensitivity_scores(
            module, ctx.encodings, ctx.y, names, focus=ctx.focus if self.token_focus else None,
            n_samples=ctx.n_sensitivity_samples, device=ctx.device, random_state=ctx.random_state,
            progress=ctx.progress, kind=ctx.kind,
        )
        rows = self.settings.get("embedding_rows") and min_layer is None
        always = _embedding_rows(module, ctx.groups) if rows else {}
        return SparseMask.from_scores(scores, budget(module, ctx.density), backbone_shapes(module), always=always)
