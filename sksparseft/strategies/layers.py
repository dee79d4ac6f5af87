"""layers: layer selection, train the top ``n_layers`` transformer blocks whole."""

from __future__ import annotations

from dataclasses import dataclass

from ..model.layout import block_index, transformer_blocks
from .base import MaskStrategy, cached_prefix, whole_tensors
from .options import option


@dataclass(frozen=True)
class LayersOptions:
    n_layers: int = option(2, "how many of the top transformer blocks to train", low=1)
    cache_frozen: bool = option(
        False, "run the blocks below the trained ones once per text, without dropout, not once per epoch: "
        "the backward and most of the forward stop at the top blocks")


class Layers(MaskStrategy):
    name = "layers"
    trains = "the top `n_layers` transformer blocks, whole (layer selection)"
    default_learning_rate = 1e-4
    options = LayersOptions

    def frozen_blocks(self, module):
        blocks = transformer_blocks(module.encoder)
        first = len(blocks) - int(self.settings["n_layers"]) if blocks is not None else 0
        return cached_prefix(module, max(first, 0), self.settings["cache_frozen"])

    def select(self, module, ctx):
        names = [n for n, _ in module.encoder.named_parameters()]
        blocks = sorted({block_index(n) for n in names if block_index(n) is not None})
        if not blocks:
            raise ValueError("strategy='layers' found no numbered transformer blocks in this backbone")
        top = set(blocks[-int(self.settings["n_layers"]):])
        return whole_tensors(module, [name for name in names if block_index(name) in top])
