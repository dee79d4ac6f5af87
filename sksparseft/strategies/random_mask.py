"""random: a random mask of the same density (the sensitivity ablation)."""

from __future__ import annotations

import torch

from ..model.layout import block_index
from ..model.mask import SparseMask
from ..model.sensitivity import eligible_parameters
from .base import MaskStrategy, backbone_shapes, budget
from .options import options_from
from .token_sparse import TokenSparseOptions

RandomMaskOptions = options_from(TokenSparseOptions, "density", "min_layer", "cache_frozen", "ce_min_layer", name="RandomMaskOptions")


class RandomMask(MaskStrategy):
    name = "random"
    trains = "`density` backbone entries drawn at random (seeded by `random_state`): the sensitivity ablation"
    default_learning_rate = 1e-3
    options = RandomMaskOptions

    def bf16_on_cpu(self):
        # Measured over every block in both regimes (precision_screen, fast_full); the top-blocks settings were not.
        return self.settings.get("min_layer") is None and self.settings.get("ce_min_layer") is None

    def select(self, module, ctx):
        g = torch.Generator().manual_seed(0 if ctx.random_state is None else int(ctx.random_state))
        params = dict(module.encoder.named_parameters())
        names = eligible_parameters(module)
        min_layer = self.settings.get("min_layer")
        if min_layer is not None:
            names = [n for n in names if block_index(n) is not None and block_index(n) >= int(min_layer)]
            if not names:
                raise ValueError(f"strategy_options min_layer={min_layer} leaves no transformer block to train")
        scores = {n: torch.rand(params[n].shape, generator=g) for n in names}
        return SparseMask.from_scores(scores, budget(module, self.settings["density"]), backbone_shapes(module))
