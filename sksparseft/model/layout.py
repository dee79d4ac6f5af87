"""Where a backbone tensor sits: which transformer block, embeddings or other (the one definition).

Encoders and decoders keep their blocks in a ``ModuleList`` called ``layer``, ``layers``, ``h``,
``block`` or ``blocks``; tensor names carry that list's name and the block's index
(``encoder.layer.3.attention...``). Masks, strategies, reports and the block cache all read
positions from here.
"""

from __future__ import annotations

import re

from torch import nn

BLOCK_LIST_NAMES = ("layer", "layers", "h", "block", "blocks")

_BLOCK = re.compile(r"(?:^|\.)(?:" + "|".join(BLOCK_LIST_NAMES) + r")\.(\d+)\.")


def transformer_blocks(encoder):
    """The encoder's transformer blocks: its longest ``ModuleList`` named as in ``BLOCK_LIST_NAMES``."""
    best = None
    for name, mod in encoder.named_modules():
        if isinstance(mod, nn.ModuleList) and name.rsplit(".", 1)[-1] in BLOCK_LIST_NAMES:
            if best is None or len(mod) > len(best):
                best = mod
    return best


def block_index(name):
    """The transformer block a tensor belongs to (``3`` for ``encoder.layer.3...``), or None outside the blocks."""
    m = _BLOCK.search(name)
    return int(m.group(1)) if m else None


def layer_of(name):
    """``"layer.3"`` for a tensor inside transformer block 3, else ``"embeddings"`` or ``"other"``."""
    block = block_index(name)
    if block is not None:
        return f"layer.{block}"
    if "embed" in name:
        return "embeddings"
    return "other"


def module_kind(name):
    """A coarse module family for reporting: attention, mlp, layernorm, embeddings, other."""
    lowered = name.lower()
    if "norm" in lowered:
        return "layernorm"
    if "embed" in lowered:
        return "embeddings"
    if any(k in lowered for k in ("attention", "attn", "query", "key", "value", "q_proj", "k_proj", "v_proj", "o_proj")):
        return "attention"
    if any(k in lowered for k in ("intermediate", "output", "mlp", "ffn", "fc", "gate_proj", "up_proj", "down_proj")):
        return "mlp"
    return "other"
