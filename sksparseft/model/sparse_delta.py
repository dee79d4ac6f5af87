"""The sparse delta's fast path: Linear weight gradients on the selected block only, embedding rows as a table.

The plain path adds the delta onto a copy of each weight, so autograd forms the dense
(out x in) weight gradient and then gathers k entries from it. Here an ``nn.Linear``'s
weight gradient is formed only on the block of rows x columns that hold selected entries
(Fisher masks concentrate on few input columns), and an embedding delta is a small table
of rows looked up by token id. Same values and gradients as the plain path.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def param_key(name):
    """ParameterDict / buffer names may not contain dots."""
    return name.replace(".", "__")


def with_delta(base, idx, values):
    """A copy of ``base`` with ``values`` added at the flat indices ``idx`` (the plain path's weight)."""
    return base.reshape(-1).index_add(0, idx, values.to(base.dtype)).view_as(base)


def sparse_targets(module):
    """``{tensor name: (owning module, kind)}`` for the deltas the sparse path applies."""
    if not getattr(module, "sparse_backward", False):
        return {}
    names = set(module.delta_names)
    out = {}
    for mod_name, mod in module.encoder.named_modules():
        name = f"{mod_name}.weight" if mod_name else "weight"
        if name not in names:
            continue
        if type(mod) is nn.Linear:
            out[name] = (mod, "linear")
        elif type(mod) is nn.Embedding:
            out[name] = (mod, "embedding")
    return out


@contextlib.contextmanager
def delta_hooks(module):
    """Route Linear/Embedding deltas through the sparse path for one call; yields the rest.

    Linear modules get a forward for the duration of the call (an instance
    attribute, deleted afterwards); embeddings get a forward hook.
    """
    # Walked once per mask: the modules and index layouts do not change during training.
    cache = module.__dict__.setdefault("_layout_cache", {})
    weights = module.__dict__.setdefault("_weight_cache", {})
    if "targets" not in cache:
        cache["targets"] = sparse_targets(module)
    targets = cache["targets"]
    handles, patched = [], []
    try:
        for name, (mod, kind) in targets.items():
            idx = module.delta_indices(name)
            key = (name, idx.device)
            if key not in cache:
                with torch.inference_mode(False):  # usable by later autograd passes
                    cache[key] = _layout(kind, idx, tuple(mod.weight.shape))
            vals = module.delta_values[param_key(name)]
            if kind == "linear":
                w = _effective_weight(weights, name, mod.weight, vals, idx)
                mod.forward = _linear_forward(mod, w, cache[key], vals)
                patched.append(mod)
            else:
                handles.append(mod.register_forward_hook(_embedding_hook(cache[key], vals)))
        yield module._effective_params(skip=targets)
    finally:
        for h in handles:
            h.remove()
        for mod in patched:
            del mod.forward


def _effective_weight(cache, name, weight, vals, idx):
    """``weight`` with the delta added, in the dtype the linear will run in; rebuilt only when the values change.

    A fit runs several forwards between optimiser steps (the contrastive stage's chunks, every
    evaluation batch): one rebuild and one cast per step instead of one per forward.
    """
    device = weight.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
    # Storage and version of both: an in-place step, a copy_ or a move to another device all rebuild.
    stamp = (vals._version, vals.data_ptr(), weight._version, weight.data_ptr(), dtype, torch.is_inference_mode_enabled())
    hit = cache.get(name)
    if hit is not None and hit[0] is vals and hit[1] == stamp:
        return hit[2]
    with torch.no_grad():
        w = with_delta(weight, idx, vals).to(dtype)
    cache[name] = (vals, stamp, w)
    return w


class _BlockDeltaLinear(torch.autograd.Function):
    """y = x W'^T + b for W' = W + scatter(values) (built by the caller), the values' gradient from the selected block only."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, x, w, bias, values, layout):
        x = x.to(w.dtype)  # W' is already in the dtype autocast would run the product in
        if bias is not None:
            bias = bias.to(w.dtype)
        ctx.save_for_backward(x, w)
        ctx.layout, ctx.values_dtype = layout, values.dtype
        return torch.nn.functional.linear(x, w, bias)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out):
        x, w = ctx.saved_tensors
        flat, block_rows, block_cols, local, dense = ctx.layout
        g2 = grad_out.reshape(-1, grad_out.shape[-1])
        # One 2-D product: a non-contiguous 3-D grad_out @ w makes matmul copy w once per text (bmm).
        grad_x = (g2 @ w.to(g2.dtype)).view(*grad_out.shape[:-1], w.shape[1]) if ctx.needs_input_grad[0] else None
        x2 = x.reshape(-1, x.shape[-1]).to(g2.dtype)
        if dense:
            grad_values = (g2.t() @ x2).reshape(-1)[flat]
        else:
            grad_values = (g2.index_select(1, block_rows).t() @ x2.index_select(1, block_cols)).reshape(-1)[local]
        grad_bias = g2.sum(0) if ctx.needs_input_grad[2] else None
        return grad_x, None, grad_bias, grad_values.to(ctx.values_dtype), None


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


def _linear_forward(module, w, layout, vals):
    def forward(x):
        return _BlockDeltaLinear.apply(x, w, module.bias, vals, layout)

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
