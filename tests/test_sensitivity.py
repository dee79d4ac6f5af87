"""Token-driven sensitivity (sensitivity.py): the token focus and what it changes in the mask."""

import numpy as np
import pytest
import torch

from cases import FAST, tiny_batch, tiny_module
from sksparseft import TokenSparseClassifier
from sksparseft.model.sensitivity import eligible_parameters, sensitivity_scores
from sksparseft.text.tokens import encode


_module, _batch = tiny_module, tiny_batch


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


def test_token_focus_removes_gradient_from_positions_outside_the_groups(tiny_model):
    """Outside the focused positions the last hidden state passes no gradient back; inside it does."""
    tok, m = _module(tiny_model)
    ids, mask, _ = _batch(tok)
    focus = torch.zeros_like(mask)
    focus[:, 1] = 1
    seen = {}

    def keep_hidden(module, args, out):
        out.last_hidden_state.retain_grad()
        seen["hidden"] = out.last_hidden_state

    for p in m.encoder.parameters():
        p.requires_grad_(True)  # so that the backbone's forward builds a graph
    handle = m.encoder.register_forward_hook(keep_hidden)
    try:
        m(ids, mask, focus=focus).logsumexp(-1).sum().backward()
    finally:
        handle.remove()
    grad = seen["hidden"].grad.abs().sum(-1)
    outside = (focus == 0) & (mask == 1)
    assert float(grad[outside].max()) == 0.0
    assert bool((grad[:, 1] > 0).all())
    # Without the focus every content position passes gradient.
    m.zero_grad()
    handle = m.encoder.register_forward_hook(keep_hidden)
    try:
        m(ids, mask).logsumexp(-1).sum().backward()
    finally:
        handle.remove()
    assert bool((seen["hidden"].grad.abs().sum(-1)[mask == 1] > 0).all())


@pytest.fixture(scope="module")
def masks(tiny_model, toy_data):
    X, y = toy_data
    out = {}
    for strategy in ("token_sparse", "fisher"):
        clf = TokenSparseClassifier(tiny_model, strategy=strategy, random_state=0, **FAST).fit(X, y)
        out[strategy] = clf.mask_
    return out


def test_token_sparse_and_fisher_select_differently(masks, tiny_model):
    ts, fi = masks["token_sparse"], masks["fisher"]
    emb = "embeddings.word_embeddings.weight"
    # The method adds the token groups' embedding rows; fisher scores every position and adds none.
    assert emb in ts.indices and emb not in fi.indices
    # Within the scored tensors the token focus changes which entries win, at the same budget.
    scored = sorted((set(ts.indices) | set(fi.indices)) - {emb})
    chosen_ts = {(n, int(i)) for n in scored if n in ts.indices for i in ts.indices[n]}
    chosen_fi = {(n, int(i)) for n in scored if n in fi.indices for i in fi.indices[n]}
    assert len(chosen_ts) == len(chosen_fi)
    assert chosen_ts != chosen_fi


def test_sensitivity_samples_are_drawn_by_the_seed(tiny_model):
    tok, m = _module(tiny_model)
    e = encode(tok, [f"text number {i} about cards" for i in range(12)], 16)
    y = np.arange(12) % 3
    names = eligible_parameters(m)[:4]
    a = sensitivity_scores(m, e, y, names, n_samples=4, random_state=0)
    b = sensitivity_scores(m, e, y, names, n_samples=4, random_state=0)
    c = sensitivity_scores(m, e, y, names, n_samples=4, random_state=1)
    assert all(torch.equal(a[n], b[n]) for n in names)
    assert any(not torch.equal(a[n], c[n]) for n in names)
