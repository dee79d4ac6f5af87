"""The torch module trained by fit: a frozen backbone, a sparse delta on it, a pooling and a head."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.func import functional_call

from .backbone import pool_output
from .block_cache import cached_blocks
from .layout import block_index, transformer_blocks
from .sparse_delta import delta_hooks, param_key, with_delta


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
    pooling : {"mean", "cls", "last", "pooler"}
    dropout : float
        Dropout on the pooled features before the head.
    amp : bool
        bf16 autocast on CUDA (ignored on other devices).
    sparse_backward : bool
        Route the delta of ``nn.Linear`` weights through an autograd function whose
        weight gradient covers only the rows x columns holding selected entries, and
        the delta of ``nn.Embedding`` weights through a small row table, instead of
        adding each delta onto a copy of its weight (the plain path, dense weight
        gradients). Same values and gradients; cheaper on CPUs.
    """

    def __init__(self, encoder, n_classes, pooling="mean", dropout=0.1, amp=True, sparse_backward=True):
        super().__init__()
        self.encoder = encoder
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_classes)
        self.pooling = pooling
        self.amp = amp
        self.sparse_backward = sparse_backward
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
            self.register_buffer(f"delta_idx__{param_key(name)}", idx.to(base.device), persistent=True)
            self.delta_values[param_key(name)] = nn.Parameter(torch.zeros(idx.numel(), dtype=base.dtype, device=base.device))
            self.delta_names.append(name)
        if getattr(self, "cached_blocks", 0):
            self._check_frozen_below(self.cached_blocks)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_layout_cache", None)  # derived from the mask; rebuilt on demand
        state.pop("_weight_cache", None)  # the effective weights of the last forward; rebuilt on demand
        state.pop("_block_cache", None)  # per-text activations of a fit; never shipped
        return state

    # -- frozen blocks computed once per text ------------------------------
    def cache_frozen_blocks(self, k):
        """Compute the embeddings and blocks ``0..k-1`` once per distinct text, then reuse them.

        Only valid while nothing below block ``k`` trains (checked here and by :meth:`set_mask`).
        The cached part always runs in eval mode (no dropout), so a text's input to
        block ``k`` is the same whenever it is seen. :meth:`clear_block_cache` ends it.
        """
        blocks = transformer_blocks(self.encoder)
        if blocks is None or not 0 < int(k) < len(blocks) + 1:
            raise ValueError(f"cannot cache {k} frozen blocks of a backbone with {0 if blocks is None else len(blocks)} blocks")
        self._check_frozen_below(int(k))
        self.cached_blocks = int(k)
        # The block list is walked once here, not on every batch.
        self.__dict__["_block_cache"] = {"rows": {}, "tuple_out": None, "blocks": blocks}
        return self.train(self.training)

    def clear_block_cache(self):
        self.cached_blocks = 0
        self.__dict__.pop("_block_cache", None)
        return self.train(self.training)

    def train(self, mode=True):
        super().train(mode)
        k = getattr(self, "cached_blocks", 0)
        if k and mode:
            # Cached activations must not depend on dropout: below block k runs as in eval.
            self.encoder.eval()
            for block in self.__dict__["_block_cache"]["blocks"][k:]:
                block.train(True)
        return self

    def _check_frozen_below(self, k):
        trained = {n for n in self.delta_names if self.delta_values[param_key(n)].requires_grad}
        trained |= {n for n, p in self.encoder.named_parameters() if p.requires_grad}
        for name in trained:
            if _below(name, k):
                raise RuntimeError(f"{name} trains, so the blocks below {k} cannot be cached")

    def freeze_below(self, k):
        """Stop training everything outside blocks ``>= k`` (embeddings and tensors outside the blocks too).

        Deltas keep their values: what trained before goes on counting, it just stops changing.
        """
        for name in self.delta_names:
            if _below(name, k):
                self.delta_values[param_key(name)].requires_grad_(False)
        for name, p in self.encoder.named_parameters():
            if _below(name, k):
                p.requires_grad_(False)
        return self

    def delta_indices(self, name):
        return getattr(self, f"delta_idx__{param_key(name)}")

    def delta(self):
        """``{tensor name: (flat indices, values)}`` of the learned change, on CPU."""
        return {
            n: (self.delta_indices(n).detach().cpu(), self.delta_values[param_key(n)].detach().float().cpu())
            for n in self.delta_names
        }

    def _effective_params(self, skip=()):
        params = dict(self.encoder.named_parameters())
        out = {}
        for name in self.delta_names:
            if name in skip:
                continue
            base = params[name]
            vals = self.delta_values[param_key(name)]
            out[name] = with_delta(base, self.delta_indices(name), vals)
        return out

    def trainable_state(self, device=None):
        """A copy of every trainable tensor (delta values, whole tensors, adapters, head), on ``device`` if given."""
        return {n: p.detach().to(device).clone() if device is not None else p.detach().clone()
                for n, p in self.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def load_trainable_state_(self, state):
        """Put back a :meth:`trainable_state` copy (before the delta is merged)."""
        if self.merged:
            raise RuntimeError("the delta is merged into the backbone; its state can no longer be loaded")
        params = dict(self.named_parameters())
        k = getattr(self, "cached_blocks", 0)
        if k:
            # Rows computed with other values below block k would be stale: drop them (recomputed when next read).
            names = {f"delta_values.{param_key(n)}": n for n in self.delta_names}
            if any(_below(names.get(n, n.removeprefix("encoder.")), k) and not torch.equal(params[n], v.to(params[n].device))
                   for n, v in state.items() if n in names or n.startswith("encoder.")):
                self.__dict__["_block_cache"]["rows"].clear()
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
            base.view(-1).index_add_(0, self.delta_indices(name), self.delta_values[param_key(name)].to(base.dtype))
            self.delta_values[param_key(name)].requires_grad_(False)
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.__dict__.pop("_weight_cache", None)  # merged weights need no delta-added copies
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
            with cached_blocks(self, input_ids, attention_mask):
                if self.delta_names and not self.merged:
                    with delta_hooks(self) as effective:
                        if effective:
                            out = functional_call(self.encoder, effective, args=(), kwargs=kwargs, strict=False)
                        else:
                            out = self.encoder(**kwargs)
                else:
                    out = self.encoder(**kwargs)
            return pool_output(out, attention_mask, self.pooling, focus).float()

    def forward(self, input_ids, attention_mask, focus=None):
        features = self.features(input_ids, attention_mask, focus)
        # The head and its logits stay float32 under a stage's autocast (CPU, CUDA).
        off = torch.autocast(input_ids.device.type, enabled=False) if input_ids.device.type in ("cpu", "cuda") \
            else contextlib.nullcontext()
        with off:
            return self.head(self.dropout(features))


def _below(name, k):
    """Whether backbone tensor ``name`` is outside blocks ``>= k``: below them, or outside every block.

    Tensors outside the blocks (embeddings, a pooler, a final or shared norm, relative position
    tables) count as below: some of them feed every block, so cached rows depend on them.
    """
    block = block_index(name)
    return block is None or block < k
