import torch

from sksparseft.model.mask import SparseMask, layer_of, module_kind


def test_from_scores_keeps_exactly_the_top_entries():
    scores = {"a": torch.tensor([[0.1, 5.0], [0.2, 0.3]]), "b": torch.tensor([4.0, 0.0, 3.0])}
    shapes = {"a": (2, 2), "b": (3,), "c": (4,)}
    mask = SparseMask.from_scores(scores, 3, shapes)
    assert mask.n_selected == 3
    assert mask.indices["a"].tolist() == [1]
    assert mask.indices["b"].tolist() == [0, 2]
    assert "c" not in mask.indices
    assert mask.dense("a").tolist() == [[False, True], [False, False]]
    assert mask.n_total == 11


def test_always_indices_are_added_outside_the_budget():
    scores = {"a": torch.tensor([1.0, 2.0, 3.0])}
    shapes = {"a": (3,), "emb": (4, 2)}
    mask = SparseMask.from_scores(scores, 1, shapes, always={"emb": torch.tensor([2, 3, 2])})
    assert mask.indices["a"].tolist() == [2]
    assert mask.indices["emb"].tolist() == [2, 3]
    s = mask.summary()
    assert s["selected"] == 3 and s["total"] == 11
    assert abs(s["density"] - 3 / 11) < 1e-12
    assert sum(v["selected"] for v in s["per_layer"].values()) == 3


def test_names_map_to_layers_and_module_kinds():
    assert layer_of("encoder.layer.3.attention.self.query.weight") == "layer.3"
    assert layer_of("embeddings.word_embeddings.weight") == "embeddings"
    assert module_kind("encoder.layer.0.attention.self.query.weight") == "attention"
    assert module_kind("encoder.layer.0.intermediate.dense.weight") == "mlp"
    assert module_kind("encoder.layer.0.output.LayerNorm.weight") == "layernorm"
