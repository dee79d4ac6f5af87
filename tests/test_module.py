import torch

from sksparseft.backbone import load_backbone
from sksparseft.mask import SparseMask
from sksparseft.module import ClassifierModule
from sksparseft.sensitivity import eligible_parameters, sensitivity_scores
from sksparseft.tokens import encode


def _module(tiny_model):
    tok, enc, _ = load_backbone(tiny_model)
    return tok, ClassifierModule(enc, 3, pooling="mean", dropout=0.0)


def _batch(tok):
    e = encode(tok, ["my card is late", "refund please", "pin"], 16)
    return torch.as_tensor(e["input_ids"]), torch.as_tensor(e["attention_mask"]), e


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


def test_focus_limits_sensitivity_to_token_group_positions(tiny_model):
    tok, m = _module(tiny_model)
    _, _, enc = _batch(tok)
    y = torch.tensor([0, 1, 2]).numpy()
    names = eligible_parameters(m)
    assert "embeddings.word_embeddings.weight" not in names
    assert not any(n.startswith("pooler.") for n in names)
    full = sensitivity_scores(m, enc, y, names, n_samples=3, random_state=0)
    assert all(s.shape == dict(m.encoder.named_parameters())[n].shape for n, s in full.items())
    assert sum(float(s.sum()) for s in full.values()) > 0
    focus = enc["attention_mask"] * 0
    focus[:, 1] = 1  # only the first content token of each text passes gradient
    focused = sensitivity_scores(m, enc, y, names, focus=focus, n_samples=3, random_state=0)
    diff = sum(float((full[n] - focused[n]).abs().sum()) for n in names)
    assert diff > 0
    assert all(not p.requires_grad for p in m.encoder.parameters())  # restored after scoring


def test_length_buckets_cover_every_row_once_with_less_padding():
    import numpy as np

    from sksparseft.batching import LengthBucketSampler

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 80, size=1000)
    g = torch.Generator().manual_seed(0)
    batches = list(LengthBucketSampler(lengths, 32, shuffle=True, generator=g, pool=10))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000)) and len(batches) == len(LengthBucketSampler(lengths, 32))
    bucket_pad = sum(max(lengths[b]) * len(b) for b in batches)
    plain = torch.randperm(1000, generator=torch.Generator().manual_seed(0)).numpy()
    plain_pad = sum(max(lengths[plain[i:i + 32]]) * len(plain[i:i + 32]) for i in range(0, 1000, 32))
    assert bucket_pad < 0.8 * plain_pad
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert list(LengthBucketSampler(lengths, 32, generator=g1)) == list(LengthBucketSampler(lengths, 32, generator=g2))


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

    from sksparseft.layout import transformer_blocks

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
    import pytest

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
