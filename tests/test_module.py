import pytest
import torch

from cases import tiny_batch, tiny_module
from sksparseft.model.backbone import load_backbone
from sksparseft.text.tokens import encode
from sksparseft.model.mask import SparseMask
from sksparseft.model.module import ClassifierModule
from sksparseft.model.sparse_delta import param_key


_module, _batch = tiny_module, tiny_batch


def test_backbone_is_frozen_and_zero_delta_changes_nothing(tiny_model):
    tok, m = _module(tiny_model)
    m.eval()
    ids, am, _ = _batch(tok)
    assert not any(p.requires_grad for p in m.encoder.parameters())
    before = m(ids, am)
    name = "encoder.layer.0.attention.self.query.weight"
    m.set_mask(SparseMask({name: torch.tensor([0, 5, 7])}, {name: (32, 32)}))
    assert torch.equal(before, m(ids, am))
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert sorted(trainable) == sorted(["head.weight", "head.bias", f"delta_values.{name.replace('.', '__')}"])


def test_delta_moves_only_selected_entries_and_merge_matches(tiny_model):
    tok, m = _module(tiny_model)
    m.eval()
    ids, am, _ = _batch(tok)
    name = "encoder.layer.1.intermediate.dense.weight"
    m.set_mask(SparseMask({name: torch.tensor([3, 100])}, {name: (64, 32)}))
    base = dict(m.encoder.named_parameters())[name].detach().clone()
    with torch.no_grad():
        next(iter(m.delta_values.values())).copy_(torch.tensor([0.5, -0.25]))
    out_delta = m(ids, am)
    m.merge_()
    merged = dict(m.encoder.named_parameters())[name].detach()
    changed = (merged != base).flatten().nonzero().flatten().tolist()
    assert changed == [3, 100]
    assert torch.allclose(m(ids, am), out_delta, atol=1e-6)
    delta = m.delta()
    assert delta[name][0].tolist() == [3, 100]


def test_sparse_backward_matches_plain_path(tiny_model):
    """The hook path (no dense weight gradient) gives the plain path's outputs and gradients."""
    tok, _ = _module(tiny_model)
    ids, am, _ = _batch(tok)
    from sksparseft.strategies.base import backbone_shapes

    results = []
    for sparse in (False, True):
        torch.manual_seed(0)
        _, enc, _ = load_backbone(tiny_model)
        m = ClassifierModule(enc, 3, dropout=0.0, sparse_backward=sparse).eval()
        shapes = backbone_shapes(m)
        g = torch.Generator().manual_seed(1)
        picks = {n: torch.randperm(int(torch.tensor(s).prod()), generator=g)[:7] for n, s in shapes.items()}
        m.set_mask(SparseMask(picks, shapes))
        with torch.no_grad():
            for v in m.delta_values.values():
                v.copy_(torch.randn(v.shape, generator=g) * 0.1)
        out = m(ids, am)
        out.square().sum().backward()
        grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.requires_grad and p.grad is not None}
        results.append((out.detach(), grads))
    (out0, g0), (out1, g1) = results
    assert torch.allclose(out0, out1, atol=1e-5)
    assert g0.keys() == g1.keys() and len(g0) > 10
    for n in g0:
        assert torch.allclose(g0[n], g1[n], atol=1e-5, rtol=1e-4), n
    # the word embedding delta is applied by its hook, so the frozen matrix gets no gradient
    assert all(p.grad is None for p in m.encoder.parameters())


def _top_block_module(tiny_model, k_cache, picks_from="layer.1."):
    from sksparseft.strategies.base import backbone_shapes

    torch.manual_seed(0)
    _, enc, _ = load_backbone(tiny_model)
    m = ClassifierModule(enc, 3, dropout=0.0)
    shapes = backbone_shapes(m)
    g = torch.Generator().manual_seed(1)
    picks = {n: torch.randperm(int(torch.tensor(s).prod()), generator=g)[:7] for n, s in shapes.items() if picks_from in n}
    m.set_mask(SparseMask(picks, shapes))
    with torch.no_grad():
        for v in m.delta_values.values():
            v.copy_(torch.randn(v.shape, generator=g) * 0.1)
    if k_cache:
        m.cache_frozen_blocks(k_cache)
    return m.eval()


def test_cached_frozen_blocks_match_the_plain_path(tiny_model):
    """Blocks below the mask run once per text; reusing them gives the same outputs and gradients."""
    import pickle

    from sksparseft.model.layout import transformer_blocks

    tok, _ = _module(tiny_model)
    plain, cached = _top_block_module(tiny_model, 0), _top_block_module(tiny_model, 1)
    calls = []
    counter = transformer_blocks(cached.encoder)[0].attention.register_forward_hook(lambda *a: calls.append(1))

    def run(m, texts):
        e = encode(tok, texts, 16)
        m.zero_grad()
        out = m(torch.as_tensor(e["input_ids"]), torch.as_tensor(e["attention_mask"]))
        out.square().sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    first = ["my card is late", "refund please", "pin"]
    # Recorded on first sight, reused after: also in another order and padding, and mixed with a new text.
    for texts, expect_block0 in ((first, True), (first, False), (["pin", "refund please"], False), (["pin", "a new text"], True)):
        n_calls = len(calls)
        (o0, g0), (o1, g1) = run(plain, texts), run(cached, texts)
        torch.testing.assert_close(o1, o0, atol=1e-5, rtol=1e-4)
        assert g0.keys() == g1.keys() and len(g0) > 5
        for n in g0:
            torch.testing.assert_close(g1[n], g0[n], atol=1e-5, rtol=1e-4)
        assert (len(calls) > n_calls) == expect_block0
    assert len(cached._block_cache["rows"]) == 4
    counter.remove()
    assert "_block_cache" not in pickle.loads(pickle.dumps(cached)).__dict__

    # Training mode keeps the cached part (embeddings, block 0) free of dropout.
    cached.train()
    blocks = transformer_blocks(cached.encoder)
    assert not blocks[0].training and not cached.encoder.embeddings.training and blocks[1].training
    cached.clear_block_cache()
    assert "_block_cache" not in cached.__dict__ and cached.encoder.embeddings.training


def test_caching_refuses_blocks_that_train(tiny_model):
    m = _top_block_module(tiny_model, 0, picks_from="layer.0.")
    with pytest.raises(RuntimeError, match="cannot be cached"):
        m.cache_frozen_blocks(1)
    # Caching first, then a mask that trains below it: refused when the mask is set.
    from sksparseft.strategies.base import backbone_shapes

    _, enc, _ = load_backbone(tiny_model)
    m = ClassifierModule(enc, 3, dropout=0.0).cache_frozen_blocks(1)
    shapes = backbone_shapes(m)
    name = next(n for n in shapes if "layer.0." in n and n.endswith("weight"))
    with pytest.raises(RuntimeError, match="cannot be cached"):
        m.set_mask(SparseMask({name: torch.arange(3)}, shapes))


def test_frozen_below_a_block_its_entries_keep_their_values_and_can_be_cached(tiny_model):
    """``freeze_below`` (ce_min_layer): the delta below the block stops training and the block cache takes it."""
    m = _top_block_module(tiny_model, 0, picks_from="")  # entries of every tensor: embeddings, blocks, pooler
    below = [n for n in m.delta_names if "layer.1." not in n]
    assert {"embeddings", "layer.0", "pooler"} <= {n.split(".")[0] if "layer." not in n else "layer.0"
                                                  for n in below}
    values = {n: m.delta_values[param_key(n)].detach().clone() for n in below}
    with pytest.raises(RuntimeError, match="cannot be cached"):
        m.cache_frozen_blocks(1)
    m.freeze_below(1).cache_frozen_blocks(1)
    trains = {n for n in m.delta_names if m.delta_values[param_key(n)].requires_grad}
    assert trains and all("layer.1." in n for n in trains)
    for n in below:
        torch.testing.assert_close(m.delta_values[param_key(n)].detach(), values[n], rtol=0, atol=0)


def test_frozen_below_a_block_whole_tensors_stop_training_there_only(tiny_model):
    """``freeze_below`` also stops backbone tensors that train whole (outside blocks >= k), not those above."""
    m = _top_block_module(tiny_model, 0, picks_from="layer.")
    params = dict(m.encoder.named_parameters())
    names = [next(n for n in params if n.startswith("embeddings.")), next(n for n in params if "layer.0." in n),
             next(n for n in params if "pooler" in n), next(n for n in params if "layer.1." in n)]
    for n in names:
        params[n].requires_grad_(True)
    m.freeze_below(1)
    assert [params[n].requires_grad for n in names] == [False, False, False, True]


def test_loading_other_values_below_the_cached_blocks_drops_their_rows(tiny_model):
    """A cached row computed with other weights below block k is never read again."""
    tok, _ = _module(tiny_model)
    m = _top_block_module(tiny_model, 0, picks_from="layer.").freeze_below(1).cache_frozen_blocks(1)
    e = encode(tok, ["my card is late", "refund please"], 16)
    ids, am = torch.as_tensor(e["input_ids"]), torch.as_tensor(e["attention_mask"])
    first = m(ids, am).detach()
    rows = m._block_cache["rows"]
    assert len(rows) == 2
    state = m.trainable_state()
    m.load_trainable_state_(state)  # the same values: the rows stay
    assert len(rows) == 2
    above = next(n for n in m.delta_names if "layer.1." in n)
    m.load_trainable_state_({f"delta_values.{param_key(above)}": m.delta_values[param_key(above)].detach() + 1.0})
    assert len(rows) == 2  # a change at or above block 1 leaves its input as it was
    below = next(n for n in m.delta_names if "layer.0." in n)
    changed = {f"delta_values.{param_key(below)}": m.delta_values[param_key(below)].detach() + 1.0}
    m.load_trainable_state_(changed)
    assert not rows
    plain = _top_block_module(tiny_model, 0, picks_from="layer.")
    plain.load_trainable_state_({**{n: v for n, v in m.named_parameters()}})
    torch.testing.assert_close(m(ids, am).detach(), plain(ids, am).detach(), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(m(ids, am).detach(), first)
