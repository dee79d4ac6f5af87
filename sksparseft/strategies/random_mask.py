"""random: a random mask of the same density (the sensitivity ablation)."""

from __future__ import annotations

import torch

from ..model.mask import SparseMask
from ..model.sensitivity import eligible_parameters
from .base import MaskStrategy, backbone_shapes, budget


class RandomMask(MaskStrategy):
    name = "random"
    trains = "`density` backbone entries drawn at random (seeded by `random_state`): the sensitivity ablation"
    default_learning_rate = 1e-3

    def select(self, module, ctx):
        g = torch.Generator().manual_seed(0 if ctx.random_state is None else int(ctx.random_state))
        params = dict(module.encoder.named_parameters())
        scores = {n: torch.rand(params[n].shape, generator=g) for n in eligible_parameters(module)}
        return SparseMask.from_scores(scores, budget(module, ctx.density), backbone_shapes(module))
