"""Row-structured masks: the same share of each Linear weight's rows, chosen at random or by score."""

import numpy as np
import pytest
import torch

from sksparseft.model.backbone import load_backbone
from sksparseft.model.module import ClassifierModule
from sksparseft.strategies.rows import linear_weights, rows_mask, top_rows


@pytest.fixture(scope="module")
def module(tiny_model):
    _, encoder, _ = load_backbone(tiny_model)
    return ClassifierModule(encoder, 3, pooling="mean")


def test_the_weights_are_the_blocks_2d_weights_above_min_layer(module):
    names = linear_weights(module)
    assert names and all(".layer." in n and n.endswith(".weight") for n in names)
    assert not any("embeddings" in n or "LayerNorm" in n for n in names)
    assert set(linear_weights(module, 1)) == {n for n in names if ".layer.1." in n}
    with pytest.raises(ValueError, match="min_layer=2 leaves no transformer block"):
        linear_weights(module, 2)


def test_top_rows_takes_the_rows_whose_entries_add_up_highest(module):
    names = linear_weights(module, 1)
    params = dict(module.encoder.named_parameters())
    rng = np.random.default_rng(0)
    best = {n: np.sort(rng.choice(params[n].shape[0], 3, replace=False)) for n in names}
    scores = {}
    for n in names:
        rows, cols = params[n].shape
        s = torch.zeros(rows, cols)
        s[:, 0] = 5.0  # every row has one large entry: the largest single entries name no row in particular
        s[torch.as_tensor(best[n])] = 1.0  # these rows hold no large entry, but add up highest (cols >= 32)
        scores[n] = s
    density = 3 / 64 * sum(params[n].numel() for n in names) / sum(p.numel() for p in module.encoder.parameters())
    mask = rows_mask(module, names, density, top_rows(scores))
    for n in names:
        rows, cols = mask.shapes[n]
        chosen = np.unique(mask.indices[n].numpy() // cols)
        k = max(1, round(3 / 64 * rows))  # the same share of every weight's rows
        assert len(chosen) == k and len(mask.indices[n]) == k * cols
        assert set(chosen) <= set(best[n])


def test_always_rows_come_on_top_of_the_budget(module):
    names = linear_weights(module, 1)

    def first(name, n_rows, k):
        return torch.arange(k)

    plain = rows_mask(module, names, 0.001, first)
    extra = {"embeddings.word_embeddings.weight": torch.arange(32)}
    mask = rows_mask(module, names, 0.001, first, always=extra)
    assert torch.equal(mask.indices["embeddings.word_embeddings.weight"], torch.arange(32))
    assert set(mask.indices) == set(names) | set(extra)
    for n in names:  # the budget's rows are the same with or without the extra ones
        assert torch.equal(mask.indices[n], plain.indices[n])
