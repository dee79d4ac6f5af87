"""The frozen-block cache (model/block_cache.py), driven directly on a small hand-made block stack.

tests/test_module.py checks it through ClassifierModule on BERT (k=1 of 2 blocks, outputs,
gradients, pickling, train mode); here: the context manager's own contract over block
outputs as tensors or tuples, blocks called positionally or by keyword, every k up to all
blocks, recording under inference mode, and what it leaves behind.
"""

import pytest
import torch
from torch import nn

from sksparseft.model.block_cache import cached_blocks


class _Block(nn.Module):
    def __init__(self, d, as_tuple):
        super().__init__()
        self.lin = nn.Linear(d, d)
        self.as_tuple = as_tuple
        self.calls = 0

    def forward(self, hidden_states, attention_mask=None):
        self.calls += 1
        # Each position mixes in the mean of the content positions: padding must not matter.
        m = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
        context = (hidden_states * m).sum(1, keepdim=True) / m.sum(1, keepdim=True)
        out = torch.tanh(self.lin(hidden_states + context))
        return (out, "extra") if self.as_tuple else out


class _Stack(nn.Module):
    def __init__(self, n_blocks=3, d=4, as_tuple=False, by_keyword=False):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(50, d)
        self.layer = nn.ModuleList(_Block(d, as_tuple) for _ in range(n_blocks))
        self.by_keyword = by_keyword
        self.as_tuple = as_tuple

    def forward(self, input_ids, attention_mask):
        h = self.embed(input_ids)
        for block in self.layer:
            out = block(hidden_states=h, attention_mask=attention_mask) if self.by_keyword else block(h, attention_mask)
            h = out[0] if self.as_tuple else out
        return h


class _Owner:
    """What cached_blocks reads of a ClassifierModule: ``cached_blocks``, ``_block_cache``, ``merged``."""

    def __init__(self, stack, k, merged=False):
        self.cached_blocks = k
        self.merged = merged
        if k is not None:
            self._block_cache = {"rows": {}, "tuple_out": None, "blocks": stack.layer}


def _batch(rows, width=None):
    width = width or max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


TEXTS = [[5, 6, 7, 8], [9, 10], [11, 12, 13]]


def _run(stack, owner, rows, width=None):
    ids, mask = _batch(rows, width)
    with cached_blocks(owner, ids, mask):
        out = stack(ids, mask)
    return out, mask


def _content(out, mask):
    """The rows of every text's content positions (padding positions are not compared)."""
    return [out[i, : int(n)] for i, n in enumerate(mask.sum(1))]


def _assert_same_content(a, b, mask):
    for x, y in zip(_content(a, mask), _content(b, mask)):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("as_tuple", [False, True], ids=["tensor", "tuple"])
@pytest.mark.parametrize("by_keyword", [False, True], ids=["positional", "keyword"])
@pytest.mark.parametrize("k", [1, 2, 3], ids=["k1", "k2", "all"])
def test_cached_inputs_give_the_plain_outputs_and_skip_the_blocks_below_k(as_tuple, by_keyword, k):
    stack = _Stack(as_tuple=as_tuple, by_keyword=by_keyword)
    owner = _Owner(stack, k)
    plain, mask = _run(stack, _Owner(stack, 0), TEXTS)
    first, _ = _run(stack, owner, TEXTS)  # records
    _assert_same_content(first, plain, mask)
    assert owner._block_cache["tuple_out"] is as_tuple
    assert len(owner._block_cache["rows"]) == 3
    # Again, in another order and with more padding: read from the cache.
    again_rows = [TEXTS[2], TEXTS[0], TEXTS[1]]
    plain2, _ = _run(stack, _Owner(stack, 0), again_rows, width=7)
    calls = [b.calls for b in stack.layer]
    again, mask2 = _run(stack, owner, again_rows, width=7)
    _assert_same_content(again, plain2, mask2)
    after = [b.calls for b in stack.layer]
    assert after[:k] == calls[:k]  # blocks below k not run
    assert all(a == c + 1 for a, c in zip(after[k:], calls[k:]))


def test_the_recorded_rows_are_each_texts_content_positions_of_block_k_minus_1():
    stack = _Stack()
    owner = _Owner(stack, 2)
    seen = []
    handle = stack.layer[1].register_forward_hook(lambda mod, args, out: seen.append(out.detach().clone()))
    _, mask = _run(stack, owner, TEXTS, width=6)
    handle.remove()
    rows = owner._block_cache["rows"]
    for i, text in enumerate(TEXTS):
        key = torch.as_tensor(text).numpy().tobytes()
        assert rows[key].shape == (len(text), 4)
        torch.testing.assert_close(rows[key], seen[0][i, : len(text)])


def test_the_cache_is_keyed_by_text_and_used_even_when_lower_blocks_change():
    """Why only frozen blocks may be cached: what was recorded is what block k reads."""
    stack = _Stack()
    owner = _Owner(stack, 1)
    first, mask = _run(stack, owner, TEXTS)
    with torch.no_grad():
        stack.layer[0].lin.weight.add_(1.0)
    cached, _ = _run(stack, owner, TEXTS)
    changed, _ = _run(stack, _Owner(stack, 0), TEXTS)
    _assert_same_content(cached, first, mask)
    assert not torch.allclose(changed, first)


def test_a_batch_with_one_new_text_runs_every_block_and_records_only_the_new_text():
    stack = _Stack()
    owner = _Owner(stack, 1)
    _run(stack, owner, TEXTS[:2])
    key0 = torch.as_tensor(TEXTS[0]).numpy().tobytes()
    kept = owner._block_cache["rows"][key0]
    calls = stack.layer[0].calls
    _run(stack, owner, [TEXTS[0], TEXTS[2]])
    assert stack.layer[0].calls == calls + 1
    assert len(owner._block_cache["rows"]) == 3
    assert owner._block_cache["rows"][key0] is kept  # the first recording stays


@pytest.mark.parametrize("owner", [
    lambda s: _Owner(s, 0), lambda s: _Owner(s, None), lambda s: _Owner(s, 2, merged=True),
], ids=["k=0", "no-cache", "merged"])
def test_nothing_is_cached_or_hooked_when_caching_is_off(owner):
    stack = _Stack()
    own = owner(stack)
    if own.cached_blocks is None:
        own.cached_blocks = 2  # a k but no cache
    ids, mask = _batch(TEXTS)
    with cached_blocks(own, ids, mask):
        assert not any(b._forward_hooks or b._forward_pre_hooks for b in stack.layer)
        stack(ids, mask)
        stack(ids, mask)
    assert all(b.calls == 2 for b in stack.layer)
    assert not getattr(own, "_block_cache", {"rows": {}})["rows"]


def test_rows_recorded_under_inference_mode_serve_a_later_training_pass():
    stack = _Stack()
    owner = _Owner(stack, 1)
    with torch.inference_mode():
        _run(stack, owner, TEXTS)
    assert not any(r.is_inference() for r in owner._block_cache["rows"].values())
    out, mask = _run(stack, owner, TEXTS)
    (out * mask.unsqueeze(-1)).sum().backward()  # an inference tensor in the graph would make this fail
    plain_stack = _Stack()
    plain, _ = _run(plain_stack, _Owner(plain_stack, 0), TEXTS)
    (plain * mask.unsqueeze(-1)).sum().backward()
    for p, q in zip(stack.layer[1:].parameters(), plain_stack.layer[1:].parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-5)
    assert all(p.grad is None for p in stack.layer[0].parameters())  # skipped: no gradient


@pytest.mark.parametrize("cached", [False, True], ids=["recording", "reading"])
def test_hooks_and_patched_forwards_are_removed_even_on_error(cached):
    stack = _Stack()
    owner = _Owner(stack, 2)
    if cached:
        _run(stack, owner, TEXTS)
    ids, mask = _batch(TEXTS)
    with pytest.raises(RuntimeError, match="boom"):
        with cached_blocks(owner, ids, mask):
            assert any(b._forward_hooks or b._forward_pre_hooks or "forward" in b.__dict__ for b in stack.layer)
            raise RuntimeError("boom")
    for block in stack.layer:
        assert "forward" not in block.__dict__
        assert not block._forward_hooks and not block._forward_pre_hooks
    calls = [b.calls for b in stack.layer]
    stack(ids, mask)
    assert [b.calls for b in stack.layer] == [c + 1 for c in calls]
