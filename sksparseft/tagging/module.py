"""The tagger's torch module: the classifier's backbone and sparse delta, a token head and an intent head."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.func import functional_call

from ..model.backbone import pool
from ..model.block_cache import cached_blocks
from ..model.module import ClassifierModule
from ..model.sparse_delta import delta_hooks


class TaggerModule(ClassifierModule):
    """Backbone + sparse delta (as :class:`~sksparseft.model.module.ClassifierModule`) + a linear head per token.

    ``head`` maps each token state to tag logits; ``intent_head`` (joint mode, else None) maps the
    mean of the token states to intent logits. Every strategy, the delta, its merge and the
    trainable-state snapshots are the classifier module's own.
    """

    def __init__(self, encoder, n_tags, n_intents=0, dropout=0.1, amp=True, sparse_backward=True):
        super().__init__(encoder, n_tags, pooling="mean", dropout=dropout, amp=amp, sparse_backward=sparse_backward)
        self.intent_head = nn.Linear(encoder.config.hidden_size, n_intents) if n_intents else None

    def token_states(self, input_ids, attention_mask, focus=None):
        """Last-layer token states ``(batch, seq, hidden)``; ``focus`` (0/1 per position) limits where gradient flows."""
        # The classifier module's forward pass up to its pooling (ClassifierModule.features), kept apart so that
        # the classifier's code stays as its release measured it.
        with self._autocast(input_ids.device):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            with cached_blocks(self, input_ids, attention_mask):
                if self.delta_names and not self.merged:
                    with delta_hooks(self) as effective:
                        out = functional_call(self.encoder, effective, args=(), kwargs=kwargs, strict=False) \
                            if effective else self.encoder(**kwargs)
                else:
                    out = self.encoder(**kwargs)
            hidden = out.last_hidden_state
            if focus is not None:
                hidden = torch.where(focus.bool().unsqueeze(-1), hidden, hidden.detach())
            return hidden.float()

    def features(self, input_ids, attention_mask, focus=None):
        """The mean of the token states: what the intent head reads."""
        return pool(self.token_states(input_ids, attention_mask, focus), attention_mask, "mean")

    def heads(self, hidden, attention_mask):
        """``tag logits`` (batch, seq, tags), or ``(tag logits, intent logits)`` with an intent head."""
        off = torch.autocast(hidden.device.type, enabled=False) if hidden.device.type in ("cpu", "cuda") \
            else contextlib.nullcontext()
        with off:
            tokens = self.head(self.dropout(hidden))
            if self.intent_head is None:
                return tokens
            return tokens, self.intent_head(self.dropout(pool(hidden, attention_mask, "mean")))

    def forward(self, input_ids, attention_mask, focus=None):
        return self.heads(self.token_states(input_ids, attention_mask, focus), attention_mask)
