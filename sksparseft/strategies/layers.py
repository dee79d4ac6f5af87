"""layers: layer selection, train the top ``n_layers`` transformer blocks whole."""

from __future__ import annotations

from ..mask import layer_of
from .base import MaskStrategy, whole_tensors


class Layers(MaskStrategy):
    name = "layers"
    default_learning_rate = 1e-4
    options = {"n_layers": 2}

    def select(self, module, ctx):
        names = [n for n, _ in module.encoder.named_parameters()]
        blocks = sorted({int(layer_of(n).split(".")[1]) for n in names if layer_of(n).startswith("layer.")})
        if not blocks:
            raise ValueError("strategy='layers' found no numbered transformer blocks in this backbone")
        n = int(self.settings["n_layers"])
        if n < 1:
            raise ValueError(f"strategy_options n_layers must be >= 1, got {n}")
        top = {f"layer.{b}" for b in blocks[-n:]}
        return whole_tensors(module, [name for name in names if layer_of(name) in top])
