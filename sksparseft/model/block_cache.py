"""Frozen bottom blocks computed once per text: the cost mode of ``min_layer`` with ``cache_frozen``.

The output of block k-1 is recorded per text (its non-padding positions) the first time
the text is seen; later, blocks 0..k-1 are skipped and block k reads the recorded rows.
Padding positions get zeros: no content position attends to them.
"""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def cached_blocks(module, input_ids, attention_mask):
    """Reuse cached inputs of block ``k`` when every text of the batch has one; else record them."""
    k = getattr(module, "cached_blocks", 0)
    cache = module.__dict__.get("_block_cache")
    if not k or cache is None or module.merged:
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


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _record_output(cache, keys, lengths):
    def hook(module, args, out):
        hidden = _first(out).detach()
        cache["tuple_out"] = isinstance(out, tuple)
        with torch.inference_mode(False):  # usable by later autograd passes
            for key, r, n in zip(keys, range(len(keys)), lengths):
                if key not in cache["rows"]:
                    # float32 whatever the pass's autocast: float32 passes read the rows too.
                    cache["rows"][key] = hidden[r, :n].to(torch.float32, copy=True)

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
