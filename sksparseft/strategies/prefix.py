"""prefix: P-tuning v2 (Liu et al. 2022), learned key/value prefixes in every attention layer.

peft's prefix tuning needs past-key-value support that BERT-style encoders lack in
transformers 5, so the prefixes are added here through a registered attention function: each
attention module gets ``prefix_key``/``prefix_value`` parameters (kv-heads x length x head_dim)
that are concatenated in front of its keys and values, with the attention mask widened to
match. The backbone stays frozen; only the prefixes (and the head) train.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..model.backbone import is_decoder_only
from .base import Strategy
from .options import option

ATTN_NAME = "sksparseft_prefix"


def prefix_attention_forward(module, query, key, value, attention_mask, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    pk = getattr(module, "prefix_key", None)
    if pk is not None:
        batch = key.shape[0]
        n_prefix = pk.shape[1]
        key = torch.cat([pk.to(key.dtype).unsqueeze(0).expand(batch, -1, -1, -1), key], dim=2)
        pv = module.prefix_value
        value = torch.cat([pv.to(value.dtype).unsqueeze(0).expand(batch, -1, -1, -1), value], dim=2)
        if attention_mask is not None:
            shape = (*attention_mask.shape[:-1], n_prefix)
            if attention_mask.dtype == torch.bool:
                pad = torch.ones(shape, dtype=torch.bool, device=attention_mask.device)
            else:
                pad = torch.zeros(shape, dtype=attention_mask.dtype, device=attention_mask.device)
            attention_mask = torch.cat([pad, attention_mask], dim=-1)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def register():
    """Make the prefix attention known to transformers (idempotent; done at import)."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(ATTN_NAME, prefix_attention_forward)
    AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)


def _attention_modules(encoder):
    for name, mod in encoder.named_modules():
        if any(isinstance(getattr(mod, k, None), nn.Linear) for k in ("key", "k_proj")) and any(
            isinstance(getattr(mod, v, None), nn.Linear) for v in ("value", "v_proj")
        ):
            yield name, mod


@dataclass(frozen=True)
class PrefixOptions:
    n_prefix: int = option(16, "prefix length: learned key and value vectors per attention layer", low=1)


class PrefixTuning(Strategy):
    name = "prefix"
    trains = ("P-tuning v2: learned key and value prefixes in every attention layer (2 x layers x kv-heads x "
              "`n_prefix` x head_dim new parameters); the backbone stays frozen")
    default_learning_rate = 5e-3
    options = PrefixOptions
    prefixes = ("prefix_key", "prefix_value")
    export_error = (
        "strategy='prefix' adds key/value prefixes that no stock transformers model carries (its attention "
        "function is custom); use save() for this model, or another strategy for a Hugging Face or ONNX export"
    )

    def rebuild(self, module):
        self.setup(module, None)

    def setup(self, module, ctx):
        register()
        encoder = module.encoder
        config = encoder.config
        if getattr(config, "is_decoder", False) or is_decoder_only(config):
            raise ValueError(
                f"strategy='prefix' supports bidirectional encoders only, not the decoder {config.model_type!r};"
                " use 'token_sparse', 'lora' or 'full'"
            )
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        n_prefix = int(self.settings["n_prefix"])
        mods = list(_attention_modules(encoder))
        if not mods:
            raise ValueError("strategy='prefix' found no attention modules with key/value projections")
        device = next(encoder.parameters()).device
        for _, mod in mods:
            mod.prefix_key = nn.Parameter(torch.randn(heads, n_prefix, head_dim, device=device) * 0.02)
            mod.prefix_value = nn.Parameter(torch.randn(heads, n_prefix, head_dim, device=device) * 0.02)
        encoder.set_attn_implementation(ATTN_NAME)
        for name, p in encoder.named_parameters():
            p.requires_grad_(self.is_own(name))
        return None
