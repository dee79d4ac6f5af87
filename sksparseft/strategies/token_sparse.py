"""token_sparse (the method): top-`density` entries by sensitivity focused on token groups, plus their embedding rows."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.layout import block_index
from ..model.mask import SparseMask
from ..model.sensitivity import eligible_parameters, sensitivity_scores
from ..text.tokens import group_token_ids
from .base import MaskStrategy, backbone_shapes, budget
from .options import option
from .rows import linear_weights, rows_mask, top_rows


def _embedding_rows(module, groups):
    emb = module.encoder.get_input_embeddings().weight
    name = next(n for n, p in module.encoder.named_parameters() if p is emb)
    rows = torch.as_tensor(group_token_ids(groups), dtype=torch.long)
    if not rows.numel():
        return {}
    hidden = emb.shape[1]
    return {name: (rows[:, None] * hidden + torch.arange(hidden)).reshape(-1)}


@dataclass(frozen=True)
class TokenSparseOptions:
    """The options of ``token_sparse`` (``fisher``, ``random`` and ``random_rows`` take some of them)."""

    density: float = option(0.01, "share of the backbone's entries the mask trains; `mask_summary_` says how much "
                            "a fit trained", above=0.0, high=1.0)
    n_sensitivity_samples: int = option(256, "training texts that score each entry's sensitivity", low=1)
    embedding_rows: bool = option(True, "also train the token groups' embedding rows, on top of `density`")
    min_layer: int | None = option(
        None, "train only the transformer blocks >= this index, and no embedding rows: the backward pass stops "
        "there (a cost lever, docs/gpu.md); None: every block", low=0)
    cache_frozen: bool = option(
        False, "with `min_layer`, run the blocks below it once per text, without dropout, not once per epoch: "
        "faster; less accurate in the benchmarks page's `min_layer` rows (10-shot `token_sparse`)")
    rows: bool = option(
        False, "choose whole output rows of the blocks' Linear weights, the same share of each weight's rows, "
        "those whose entries score highest in all (structured as `random_rows`), instead of single entries")
    ce_min_layer: int | None = option(
        None, "after the contrastive stage, train only the entries in blocks >= this index: the ones below keep "
        "what the contrastive stage gave them and their blocks run once per text in the cross-entropy epochs, "
        "the interpolation and the head refit; None: the same entries in every stage", low=1)


class TokenSparse(MaskStrategy):
    """Token-driven sparse finetuning: diagonal Fisher through token-group positions only."""

    name = "token_sparse"
    trains = ("the top `density` backbone entries by token-focused Fisher (squared gradients through the token "
              "groups' positions), plus the token groups' embedding rows")
    default_learning_rate = 1e-3
    options = TokenSparseOptions
    token_focus = True

    def select(self, module, ctx):
        min_layer = self.settings.get("min_layer")
        structured = self.settings.get("rows")
        names = linear_weights(module, min_layer) if structured else eligible_parameters(module)
        if min_layer is not None:
            min_layer = int(min_layer)
            names = [n for n in names if block_index(n) is not None and block_index(n) >= min_layer]
            if not names:
                raise ValueError(f"strategy_options min_layer={min_layer} leaves no transformer block to train")
        scores = sensitivity_scores(
            module, ctx.encodings, ctx.y, names, focus=ctx.focus if self.token_focus else None,
            n_samples=self.settings["n_sensitivity_samples"], device=ctx.device, random_state=ctx.random_state,
            progress=ctx.progress, kind=ctx.kind,
        )
        rows = self.settings.get("embedding_rows") and min_layer is None
        always = _embedding_rows(module, ctx.groups) if rows else {}
        if structured:
            return rows_mask(module, names, self.settings["density"], top_rows(scores), always=always)
        return SparseMask.from_scores(scores, budget(module, self.settings["density"]), backbone_shapes(module),
                                      always=always)
