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
            self.register_buffer(f"delta_idx__{_key(name)}", idx.to(base.device), persistent=True)
            self.delta_values[_key(name)] = nn.Parameter(torch.zeros(idx.numel(), dtype=base.dtype, device=base.device))
            self.delta_names.append(name)
        if getattr(self, "cached_blocks", 0):
            self._check_frozen_below(self.cached_blocks)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_layout_cache", None)  # derived from the mask; rebuilt on demand
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
        from .mask import block_index, layer_of

        trained = set(self.delta_names) | {n for n, p in self.encoder.named_parameters() if p.requires_grad}
        for name in trained:
            block = block_index(name)
            if layer_of(name) == "embeddings" or (block is not None and block < k):
                raise RuntimeError(f"{name} trains, so the blocks below {k} cannot be cached")

    @contextlib.contextmanager
    def _cached_blocks(self, input_ids, attention_mask):
        """Reuse cached inputs of block ``k`` when every text of the batch has one; else record them."""
        k = getattr(self, "cached_blocks", 0)
        cache = self.__dict__.get("_block_cache")
        if not k or cache is None or self.merged:
            yield
            return
        blocks = cache["blocks"]
        lengths = attention_mask.sum(1).tolist()
        ids = input_ids.detach().cpu().numpy()
        keys = [ids[r, :n].tobytes() for r, n in enumerate(lengths)]
        rows = cache["rows"]
        handles, patched = [], []
        try:
            if all(key in rows for key in keys):
                stored = [rows[key] for key in keys]
                hidden = torch.zeros((len(keys), input_ids.shape[1], stored[0].shape[-1]), dtype=stored[0].dtype, device=stored[0].device)
                for r, h in enumerate(stored):
                    hidden[r, : h.shape[0]] = h
                as_tuple = cache["tuple_out"]
                for block in blocks[:k]:
                    block.forward = _skip_block(as_tuple)
                    patched.append(block)
                handles.append(blocks[k].register_forward_pre_hook(_replace_hidden(hidden), with_kwargs=True)
                               if k < len(blocks) else blocks[k - 1].register_forward_hook(_replace_output(hidden, as_tuple)))
            else:
                handles.append(blocks[k - 1].register_forward_hook(_record_output(cache, keys, lengths)))
            yield
        finally:
            for h in handles:
                h.remove()
            for block in patched:
                del block.forward

    def delta_indices(self, name):
        return getattr(self, f"delta_idx__{_key(name)}")

    def delta(self):
        """``{tensor name: (flat indices, values)}`` of the learned change, on CPU."""
        return {
            n: (self.delta_indices(n).detach().cpu(), self.delta_values[_key(n)].detach().float().cpu())
            for n in self.delta_names
        }

    def _sparse_targets(self):
        """``{tensor name: (owning module, kind)}`` for the deltas the sparse path applies."""
        if not getattr(self, "sparse_backward", False):
            return {}
        names = set(self.delta_names)
        out = {}
        for mod_name, mod in self.encoder.named_modules():
            name = f"{mod_name}.weight" if mod_name else "weight"
            if name not in names:
                continue
            if type(mod) is nn.Linear:
                out[name] = (mod, "linear")
            elif type(mod) is nn.Embedding:
                out[name] = (mod, "embedding")
        return out

    @contextlib.contextmanager
    def _delta_hooks(self):
        """Route Linear/Embedding deltas through the sparse path for one call; yields the rest.

        Linear modules get a forward for the duration of the call (an instance
        attribute, deleted afterwards); embeddings get a forward hook.
        """
        # Walked once per mask: the modules and index layouts do not change during training.
        cache = self.__dict__.setdefault("_layout_cache", {})
        if "targets" not in cache:
            cache["targets"] = self._sparse_targets()
        targets = cache["targets"]
        handles, patched = [], []
        try:
            for name, (mod, kind) in targets.items():
                idx = self.delta_indices(name)
                key = (name, idx.device)
                if key not in cache:
                    with torch.inference_mode(False):  # usable by later autograd passes
                        cache[key] = _layout(kind, idx, tuple(mod.weight.shape))
                vals = self.delta_values[_key(name)]
                if kind == "linear":
                    mod.forward = _linear_forward(mod, cache[key], vals)
                    patched.append(mod)
                else:
                    handles.append(mod.register_forward_hook(_embedding_hook(cache[key], vals)))
            yield self._effective_params(skip=targets)
        finally:
            for h in handles:
                h.remove()
            for mod in patched:
                del mod.forward

    def _effective_params(self, skip=()):
        params = dict(self.encoder.named_parameters())
        out = {}
        for name in self.delta_names:
            if name in skip:
                continue
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
            with self._cached_blocks(input_ids, attention_mask):
                if self.delta_names and not self.merged:
                    with self._delta_hooks() as effective:
                        if effective:
                            out = functional_call(self.encoder, effective, args=(), kwargs=kwargs, strict=False)
                        else:
                            out = self.encoder(**kwargs)
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


# -- the sparse path -----------------------------------------------------------
# The plain path adds the delta onto a copy of each weight, so autograd forms the
# dense (out x in) weight gradient and then gathers k entries from it. Here an
# nn.Linear's weight gradient is formed only on the block of rows x columns that
# hold selected entries (Fisher masks concentrate on few input columns), and an
# embedding delta is a small table of rows looked up by token id.


class _BlockDeltaLinear(torch.autograd.Function):
    """y = x (W + scatter(values))^T + b, with the values' gradient from the selected block only."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, x, weight, bias, values, layout):
        flat, block_rows, block_cols, local, dense = layout
        w = weight.reshape(-1).index_add(0, flat, values.to(weight.dtype)).view_as(weight)
        ctx.save_for_backward(x, weight, values)
        ctx.layout = layout
        return torch.nn.functional.linear(x, w, bias)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out):
        x, weight, values = ctx.saved_tensors
        flat, block_rows, block_cols, local, dense = ctx.layout
        w = weight.reshape(-1).index_add(0, flat, values.to(weight.dtype)).view_as(weight)
        grad_x = grad_out @ w.to(grad_out.dtype) if ctx.needs_input_grad[0] else None
        g2 = grad_out.reshape(-1, grad_out.shape[-1])
        x2 = x.reshape(-1, x.shape[-1]).to(g2.dtype)
        if dense:
            grad_values = (g2.t() @ x2).reshape(-1)[flat]
        else:
            grad_values = (g2.index_select(1, block_rows).t() @ x2.index_select(1, block_cols)).reshape(-1)[local]
        grad_bias = g2.sum(0) if ctx.needs_input_grad[2] else None
        return grad_x, None, grad_bias, grad_values.to(values.dtype), None


def _layout(kind, idx, shape):
    """Index tensors the sparse path needs, computed once per mask and device."""
    n_rows, n_cols = shape
    rows, cols = idx // n_cols, idx % n_cols
    if kind == "linear":
        block_rows, local_r = torch.unique(rows, return_inverse=True)
        block_cols, local_c = torch.unique(cols, return_inverse=True)
        # A block nearly as large as the weight is cheaper as one plain product.
        dense = block_rows.numel() * block_cols.numel() > 0.6 * n_rows * n_cols
        return idx, block_rows, block_cols, local_r * block_cols.numel() + local_c, dense
    uniq, slot = torch.unique(rows, return_inverse=True)
    # Row table: vocabulary id -> slot of its delta row; ids without one read a zero row.
    lut = torch.full((n_rows,), len(uniq), dtype=torch.long, device=idx.device)
    lut[uniq] = torch.arange(len(uniq), device=idx.device)
    return lut, slot * n_cols + cols, len(uniq) + 1, n_cols


def _linear_forward(module, layout, vals):
    def forward(x):
        return _BlockDeltaLinear.apply(x, module.weight, module.bias, vals, layout)

    return forward


def _embedding_hook(layout, vals):
    lut, pos, n_slots, hidden = layout

    def hook(module, args, out):
        table = torch.zeros(n_slots * hidden, dtype=out.dtype, device=out.device)
        table = table.index_add(0, pos, vals.to(out.dtype)).view(n_slots, hidden)
        # F.embedding, not table[...]: its backward sums a row's gradients in one fixed order;
        # indexing's backward gave sums that differed between processes (same seed, CPU).
        return out + torch.nn.functional.embedding(lut[args[0]], table)

    return hook


# -- frozen blocks computed once ------------------------------------------------
# The output of block k-1 is recorded per text (its non-padding positions) the first time
# the text is seen; later, blocks 0..k-1 are skipped and block k reads the recorded rows.
# Padding positions get zeros: no content position attends to them.


def transformer_blocks(encoder):
    """The encoder's transformer blocks: its longest ``ModuleList`` named layer/layers/h/block(s)."""
    best = None
    for name, mod in encoder.named_modules():
        if isinstance(mod, nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layer", "layers", "h", "block", "blocks"):
            if best is None or len(mod) > len(best):
                best = mod
    return best


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _record_output(cache, keys, lengths):
    def hook(module, args, out):
        hidden = _first(out).detach()
        cache["tuple_out"] = isinstance(out, tuple)
        with torch.inference_mode(False):  # usable by later autograd passes
            for key, r, n in zip(keys, range(len(keys)), lengths):
                if key not in cache["rows"]:
                    cache["rows"][key] = hidden[r, :n].clone()

    return hook


def _skip_block(as_tuple):
    def forward(hidden_states, *args, **kwargs):
        return (hidden_states,) if as_tuple else hidden_states

    return forward


def _replace_hidden(hidden):
    def hook(module, args, kwargs):
        if args:
            return (hidden,) + tuple(args[1:]), kwargs
        return args, dict(kwargs, hidden_states=hidden)

    return hook


def _replace_output(hidden, as_tuple):
    def hook(module, args, out):
        return (hidden,) + tuple(out[1:]) if as_tuple else hidden

    return hook
