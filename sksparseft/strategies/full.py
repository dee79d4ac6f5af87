"""full: end-to-end finetuning of every backbone parameter."""

from __future__ import annotations

from .base import MaskStrategy, whole_tensors


class Full(MaskStrategy):
    name = "full"
    trains = "every backbone parameter (end-to-end finetuning)"
    default_learning_rate = 5e-5

    def select(self, module, ctx):
        # A pooler the pooling does not use gets no gradient anyway; leave it out.
        names = [n for n, _ in module.encoder.named_parameters() if module.pooling == "pooler" or not n.startswith("pooler.")]
        return whole_tensors(module, names)
