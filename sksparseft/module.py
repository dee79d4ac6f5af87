"""The torch module trained by fit: a frozen backbone, a sparse delta on it, a pooling and a head."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.func import functional_call

from .backbone import pool


def _key(name):
    # ParameterDict / buffer names may not contain dots.
    return name.replace(".", "__")


class ClassifierModule(nn.Module):
    """Backbone + sparse delta + pooling + linear head.

    The backbone's own tensors are frozen. The trainable backbone entries live
    in ``delta_values`` (one vector per selected tensor) at the flat indices
    ``delta_idx__*``; the forward pass adds them onto the frozen base with
    ``index_add``, so an entry outside the mask cannot change. After fitting,
    :meth:`merge_` folds the delta into the backbone for plain, fast inference.

    Parameters
    ----------
    encoder : transformers.PreTrainedModel
    n_classes : int
    pooling : {"mean", "cls", "pooler"}
    dropout : float
        Dropout on the pooled features before the head.
    amp : bool
        bf16 autocast on CUDA (ignored on other devices).
    """

    def __init__(self, encoder, n_classes, pooling="mean", dropout=0.1, amp=True):
        super().__init__()
        self.encoder = encoder
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_classes)
        self.pooling = pooling
        self.amp = amp
        self.delta_values = nn.ParameterDict()
        self.delta_names = []
        self.merged = False

    # -- the sparse delta -------------------------------------------------
    def set_mask(self, mask):
        """Create one zero-initialised trainable vector per selected tensor of ``mask``."""
        if self.delta_names or any(p.requires_grad for p in self.encoder.parameters()):
            raise RuntimeError("the mask is already set")
        params = dict(self.encoder.named_parameters())
        for name, idx in mask.indices.items():
            base = params[name]
            if idx.numel() == base.numel():
                # A whole tensor trains in place: no index_add, no copy.
                base.requires_grad_(True)
                continue
            self.register_buffer(f"delta_idx__{_key(name)}", idx.to(base.device), persistent=True)
            self.delta_values[_key(name)] = nn.Parameter(torch.zeros(idx.numel(), dtype=base.dtype, device=base.device))
            self.delta_names.append(name)

    def delta_indices(self, name):
        return getattr(self, f"delta_idx__{_key(name)}")

    def delta(self):
        """``{tensor name: (flat indices, values)}`` of the learned change, on CPU."""
        return {
            n: (self.delta_indices(n).detach().cpu(), self.delta_values[_key(n)].detach().float().cpu())
            for n in self.delta_names
        }

    def _effective_params(self):
        params = dict(self.encoder.named_parameters())
        out = {}
        for name in self.delta_names:
            base = params[name]
            vals = self.delta_values[_key(name)]
            out[name] = base.reshape(-1).index_add(0, self.delta_indices(name), vals.to(base.dtype)).view_as(base)
        return out

    def trainable_state(self):
        """A copy of every trainable tensor (delta values, whole tensors, adapters, head)."""
        return {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def load_trainable_state_(self, state):
        """Put back a :meth:`trainable_state` copy (before the delta is merged)."""
        if self.merged:
            raise RuntimeError("the delta is merged into the backbone; its state can no longer be loaded")
        params = dict(self.named_parameters())
        for n, v in state.items():
            params[n].copy_(v)

    @torch.no_grad()
    def merge_(self):
        """Fold the delta into the backbone weights (idempotent); training is over after this."""
        if self.merged:
            return
        params = dict(self.encoder.named_parameters())
        for name in self.delta_names:
            base = params[name]
            base.view(-1).index_add_(0, self.delta_indices(name), self.delta_values[_key(name)].to(base.dtype))
            self.delta_values[_key(name)].requires_grad_(False)
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.merged = True

    # -- forward ----------------------------------------------------------
    def _autocast(self, device):
        if self.amp and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def features(self, input_ids, attention_mask, focus=None):
        """Pooled sentence features. ``focus`` (0/1 per position) limits where gradient flows back."""
        with self._autocast(input_ids.device):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if self.delta_names and not self.merged:
                out = functional_call(self.encoder, self._effective_params(), args=(), kwargs=kwargs, strict=False)
            else:
                out = self.encoder(**kwargs)
            if self.pooling == "pooler":
                return out.pooler_output.float()
            hidden = out.last_hidden_state
            if focus is not None:
                # Same values; gradient only through the focused positions.
                hidden = torch.where(focus.bool().unsqueeze(-1), hidden, hidden.detach())
            return pool(hidden, attention_mask, self.pooling).float()

    def forward(self, input_ids, attention_mask, focus=None):
        return self.head(self.dropout(self.features(input_ids, attention_mask, focus)))
