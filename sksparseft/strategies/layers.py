"""layers: layer selection, train the top ``n_layers`` transformer blocks whole."""

from __future__ import annotations

from ..model.layout import block_index
from .base import MaskStrategy, whole_tensors


class Layers(MaskStrategy):
    name = "layers"
    default_learning_rate = 1e-4
    options = {"n_layers": 2}

    def validate(self):
        self._check_int("n_layers", 1)

    def select(self, module, ctx):
        names = [n for n, _ in module.encoder.named_parameters()]
        blocks = sorted({block_index(n) for n in names if block_index(n) is not None})
        if not blocks:
            raise ValueError("strategy='layers' found no numbered transformer blocks in this backbone")
        top = set(blocks[-int(self.settings["n_layers"]):])
        return whole_tensors(module, [name for name in names if block_index(name) in top])
