"""bitfit: train every bias of the backbone and nothing else (Ben Zaken et al., 2022)."""

from __future__ import annotations

from .base import MaskStrategy, whole_tensors


class BitFit(MaskStrategy):
    name = "bitfit"
    trains = "every bias of the backbone"
    default_learning_rate = 1e-3

    def select(self, module, ctx):
        names = [n for n, _ in module.encoder.named_parameters() if n.endswith(".bias") and not n.startswith("pooler.")]
        return whole_tensors(module, names)
