"""The sparse delta's fast path (model/sparse_delta.py) against plain autograd on a dense weight.

Small hand-made encoders, so every case is exact to check: the values and gradients of the
selected entries, nothing for the rest, and the hooks gone after the call.
"""

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.func import functional_call

from sksparseft.model.mask import SparseMask
from sksparseft.model.module import ClassifierModule
from sksparseft.model.sparse_delta import _layout, delta_hooks, param_key, sparse_targets


class _Encoder(nn.Module):
    """Embedding -> Linear -> LayerNorm -> Linear: one of each kind the fast path handles, and one it does not."""

    def __init__(self, vocab=12, hidden=6, inner=5):
        super().__init__()
        self.config = SimpleNamespace(hidden_size=hidden)
        self.embed = nn.Embedding(vocab, hidden)
        self.up = nn.Linear(hidden, inner)
        self.norm = nn.LayerNorm(inner)
        self.down = nn.Linear(inner, hidden)

    def forward(self, input_ids):
        return self.down(torch.tanh(self.norm(self.up(self.embed(input_ids)))))


def _module(picks, sparse=True, seed=0):
    torch.manual_seed(seed)
    m = ClassifierModule(_Encoder(), 2, dropout=0.0, sparse_backward=sparse)
    shapes = {n: tuple(p.shape) for n, p in m.encoder.named_parameters()}
    m.set_mask(SparseMask({n: torch.as_tensor(i) for n, i in picks.items()}, shapes))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for v in m.delta_values.values():
            v.copy_(torch.randn(v.shape, generator=g))
    return m


IDS = torch.tensor([[1, 3, 3, 7], [0, 11, 3, 2]])  # rows 3 and 7 have deltas below; 0, 1, 2, 11 do not


def _sparse_run(m, ids=IDS):
    with delta_hooks(m) as effective:
        out = functional_call(m.encoder, effective, args=(ids,), strict=False) if effective else m.encoder(ids)
    return out


def _dense_run(m, ids=IDS):
    """The plain path: every delta added onto a copy of its weight, dense autograd."""
    return functional_call(m.encoder, m._effective_params(), args=(ids,), strict=False)


def _grads(m, out):
    m.zero_grad()
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


PICKS = {
    "embed.weight": [3 * 6 + 0, 3 * 6 + 4, 7 * 6 + 5],  # rows 3 and 7
    "up.weight": [0, 7, 8, 29],  # 5 x 6: a few rows and columns (block path)
    "norm.weight": [1, 4],  # not a Linear/Embedding: the plain path
    "down.weight": list(range(0, 30, 2)),  # half of 6 x 5 spread over all rows/columns (dense path)
    "down.bias": list(range(6)),  # a whole tensor: trains in place
}


def test_param_key_has_no_dots():
    assert param_key("encoder.layer.0.attention.self.query.weight") == "encoder__layer__0__attention__self__query__weight"
    assert param_key("weight") == "weight"


def test_sparse_targets_are_the_linear_and_embedding_weights_with_deltas():
    m = _module(PICKS)
    targets = sparse_targets(m)
    assert {n: kind for n, (_, kind) in targets.items()} == {"embed.weight": "embedding", "up.weight": "linear",
                                                              "down.weight": "linear"}
    assert targets["up.weight"][0] is m.encoder.up
    assert sparse_targets(_module(PICKS, sparse=False)) == {}


def test_layout_picks_the_block_or_the_dense_product():
    up, down = _module(PICKS).delta_indices("up.weight"), _module(PICKS).delta_indices("down.weight")
    flat, rows, cols, local, dense = _layout("linear", up, (5, 6))
    assert not dense and rows.tolist() == [0, 1, 4] and cols.tolist() == [0, 1, 2, 5]
    # local indexes the rows x cols block: the same entries as the flat indices
    assert (rows[local // len(cols)] * 6 + cols[local % len(cols)]).tolist() == up.tolist()
    assert _layout("linear", down, (6, 5))[-1]


def test_fast_path_gives_the_plain_paths_values_and_gradients():
    m = _module(PICKS)
    dense_out = _dense_run(m)
    g_dense = _grads(m, dense_out)
    sparse_out = _sparse_run(m)
    g_sparse = _grads(m, sparse_out)
    torch.testing.assert_close(sparse_out, dense_out, atol=1e-6, rtol=1e-5)
    assert g_sparse.keys() == g_dense.keys() == {f"delta_values.{param_key(n)}" for n in PICKS if n != "down.bias"} | {
        "encoder.down.bias"}
    for name in g_dense:
        torch.testing.assert_close(g_sparse[name], g_dense[name], atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("name", ["embed.weight", "up.weight", "down.weight"])
def test_the_gradient_of_each_selected_entry_is_the_dense_weight_gradient_there(name):
    m = _module(PICKS)
    weight = dict(m.encoder.named_parameters())[name]
    # Reference: the dense weight (base + delta) as a leaf, plain autograd over all its entries.
    effective = {n: t.detach().clone() for n, t in m._effective_params().items()}
    leaf = weight.detach().reshape(-1).index_add(0, m.delta_indices(name), m.delta_values[param_key(name)].detach())
    leaf = leaf.view_as(weight).requires_grad_(True)
    effective[name] = leaf
    out = functional_call(m.encoder, effective, args=(IDS,), strict=False)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    dense_grad = leaf.grad.reshape(-1)
    grads = _grads(m, _sparse_run(m))
    torch.testing.assert_close(grads[f"delta_values.{param_key(name)}"], dense_grad[m.delta_indices(name)],
                               atol=1e-6, rtol=1e-5)
    assert dense_grad.abs().sum() > 0


def test_entries_outside_the_mask_get_no_gradient_and_do_not_move():
    m = _module(PICKS)
    before = {n: p.detach().clone() for n, p in m.encoder.named_parameters()}
    _grads(m, _sparse_run(m))
    for n, p in m.encoder.named_parameters():
        if n == "down.bias":  # trains whole
            assert p.grad is not None
        else:
            assert p.grad is None, n  # frozen base: no dense gradient formed
    # one SGD step on what trains moves only the selected entries of the effective weights
    with torch.no_grad():
        for p in m.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    after = m._effective_params()
    for name, idx in ((n, m.delta_indices(n)) for n in m.delta_names):
        moved = (after[name].detach() != before[name]).reshape(-1).nonzero().flatten()
        assert set(moved.tolist()) <= set(idx.tolist()), name


def _dense_delta(m, name):
    weight = dict(m.encoder.named_parameters())[name].detach()
    delta = torch.zeros(weight.numel())
    delta[m.delta_indices(name)] = m.delta_values[param_key(name)].detach()
    return weight, delta.view_as(weight)


def test_embedding_rows_with_a_delta_move_and_the_others_read_the_base_row():
    m = _module({"embed.weight": PICKS["embed.weight"]})
    weight, delta = _dense_delta(m, "embed.weight")
    with delta_hooks(m):
        out = m.encoder.embed(IDS)
    torch.testing.assert_close(out, (weight + delta)[IDS])
    has_delta = torch.isin(IDS, torch.tensor([3, 7]))
    assert torch.equal(out[~has_delta], weight[IDS][~has_delta])
    assert not torch.equal(out[has_delta], weight[IDS][has_delta])


def test_a_patched_linear_is_the_linear_of_the_changed_weight():
    m = _module({"up.weight": PICKS["up.weight"]})
    weight, delta = _dense_delta(m, "up.weight")
    x = torch.randn(3, 2, 6, generator=torch.Generator().manual_seed(2))
    with delta_hooks(m):
        out = m.encoder.up(x)
    torch.testing.assert_close(out, torch.nn.functional.linear(x, weight + delta, m.encoder.up.bias))


def test_hooks_and_patched_forwards_are_gone_after_the_call_even_on_error():
    m = _module(PICKS)
    with pytest.raises(RuntimeError, match="boom"):
        with delta_hooks(m):
            assert "forward" in m.encoder.up.__dict__  # patched for the call
            raise RuntimeError("boom")
    for mod in m.encoder.modules():
        assert "forward" not in mod.__dict__
        assert not mod._forward_hooks
    # a plain call after it runs the frozen weights alone
    torch.testing.assert_close(m.encoder(IDS), functional_call(
        m.encoder, {n: p.detach() for n, p in m.encoder.named_parameters()}, args=(IDS,)))


def test_the_layout_is_computed_once_per_mask():
    m = _module(PICKS)
    _sparse_run(m)
    cache = m.__dict__["_layout_cache"]
    layouts = {k: v for k, v in cache.items() if k != "targets"}
    assert {name for name, _ in layouts} == {"embed.weight", "up.weight", "down.weight"}
    _sparse_run(m)
    assert all(cache[k] is v for k, v in layouts.items())


def test_the_changed_weight_is_built_once_per_step_and_never_stale():
    m = _module({"up.weight": PICKS["up.weight"], "down.weight": PICKS["down.weight"]})
    _sparse_run(m)
    built = dict(m.__dict__["_weight_cache"])
    assert built.keys() == {"up.weight", "down.weight"}
    _sparse_run(m)  # values unchanged: the same tensors serve the second forward
    assert all(m.__dict__["_weight_cache"][n][2] is built[n][2] for n in built)
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    _grads(m, _sparse_run(m))
    opt.step()  # an in-place step on the values
    after = _sparse_run(m)
    assert all(m.__dict__["_weight_cache"][n][2] is not built[n][2] for n in built)
    torch.testing.assert_close(after, _dense_run(m), atol=1e-6, rtol=1e-5)
    m.load_trainable_state_({n: torch.zeros_like(p) for n, p in m.named_parameters() if n.startswith("delta_values")})
    torch.testing.assert_close(_sparse_run(m), _dense_run(m), atol=1e-6, rtol=1e-5)


def test_a_weight_built_in_inference_mode_is_not_reused_by_training():
    m = _module(PICKS)
    with torch.inference_mode():
        _sparse_run(m)
    g = _grads(m, _sparse_run(m))  # inference tensors cannot be saved for backward: rebuilt here
    assert g.keys() == {f"delta_values.{param_key(n)}" for n in PICKS if n != "down.bias"} | {"encoder.down.bias"}


def test_under_bf16_autocast_the_fast_path_runs_the_plain_paths_products():
    m = _module(PICKS)
    with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
        dense_out = _dense_run(m)
        g_dense = _grads(m, dense_out)
        sparse_out = _sparse_run(m)
        g_sparse = _grads(m, sparse_out)
    assert sparse_out.dtype == dense_out.dtype == torch.bfloat16
    assert m.__dict__["_weight_cache"]["up.weight"][2].dtype == torch.bfloat16  # cast once, kept
    torch.testing.assert_close(sparse_out, dense_out)
    for name in g_dense:
        torch.testing.assert_close(g_sparse[name], g_dense[name], atol=2e-2, rtol=2e-2, msg=name)


def test_the_built_weights_are_neither_pickled_nor_kept_after_merging():
    import pickle

    m = _module(PICKS)
    _sparse_run(m)
    assert "_weight_cache" not in pickle.loads(pickle.dumps(m)).__dict__
    m.merge_()
    assert "_weight_cache" not in m.__dict__
