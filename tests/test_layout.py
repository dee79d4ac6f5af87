"""Where a backbone tensor sits (model/layout.py): block index, layer, module kind, the block list."""

import pytest
from torch import nn

from sksparseft.model.backbone import load_backbone
from sksparseft.model.layout import block_index, layer_of, module_kind, transformer_blocks

# name -> (block_index, layer_of, module_kind)
NAMES = {
    # BERT
    "embeddings.word_embeddings.weight": (None, "embeddings", "embeddings"),
    "embeddings.position_embeddings.weight": (None, "embeddings", "embeddings"),
    "embeddings.LayerNorm.weight": (None, "embeddings", "layernorm"),
    "encoder.layer.0.attention.self.query.weight": (0, "layer.0", "attention"),
    "encoder.layer.1.attention.self.value.bias": (1, "layer.1", "attention"),
    "encoder.layer.3.attention.output.dense.weight": (3, "layer.3", "attention"),
    "encoder.layer.3.attention.output.LayerNorm.bias": (3, "layer.3", "layernorm"),
    "encoder.layer.11.intermediate.dense.weight": (11, "layer.11", "mlp"),
    "encoder.layer.11.output.dense.weight": (11, "layer.11", "mlp"),
    "pooler.dense.weight": (None, "other", "other"),
    # LLaMA-style decoder
    "embed_tokens.weight": (None, "embeddings", "embeddings"),
    "layers.0.self_attn.q_proj.weight": (0, "layer.0", "attention"),
    "layers.5.self_attn.o_proj.weight": (5, "layer.5", "attention"),
    "layers.5.mlp.gate_proj.weight": (5, "layer.5", "mlp"),
    "layers.5.mlp.down_proj.weight": (5, "layer.5", "mlp"),
    "layers.5.input_layernorm.weight": (5, "layer.5", "layernorm"),
    "layers.5.post_attention_layernorm.weight": (5, "layer.5", "layernorm"),
    "norm.weight": (None, "other", "layernorm"),
    # GPT-2 and T5 block lists
    "h.2.attn.c_attn.weight": (2, "layer.2", "attention"),
    "h.2.mlp.c_fc.weight": (2, "layer.2", "mlp"),
    "encoder.block.4.layer.0.SelfAttention.q.weight": (4, "layer.4", "attention"),
    # a whole model with a head on top
    "bert.encoder.layer.2.attention.self.key.weight": (2, "layer.2", "attention"),
    "classifier.weight": (None, "other", "other"),
    "head.weight": (None, "other", "other"),
}


@pytest.mark.parametrize("name", list(NAMES))
def test_position_of_known_tensor_names(name):
    block, layer, kind = NAMES[name]
    assert block_index(name) == block
    assert layer_of(name) == layer
    assert module_kind(name) == kind


@pytest.mark.parametrize("name", ["player.3.weight", "encoder.sublayers.2.weight", "hidden.1.weight",
                                  "encoder.layer.x.weight", "encoder.layer3.weight"])
def test_only_a_block_list_name_followed_by_an_index_is_a_block(name):
    assert block_index(name) is None
    assert layer_of(name) == "other"


def test_a_block_list_at_the_start_of_the_name():
    assert block_index("layer.7.output.dense.weight") == 7
    assert block_index("blocks.12.attn.qkv.weight") == 12


def _names_by_block(encoder):
    blocks = transformer_blocks(encoder)
    where = {id(p): i for i, block in enumerate(blocks) for p in block.parameters()}
    return blocks, [(name, where.get(id(p))) for name, p in encoder.named_parameters()]


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_decoder"])
def test_block_index_agrees_with_the_block_list_of_real_backbones(fixture, request):
    _, encoder, _ = load_backbone(request.getfixturevalue(fixture))
    blocks, names = _names_by_block(encoder)
    assert isinstance(blocks, nn.ModuleList) and len(blocks) == encoder.config.num_hidden_layers == 2
    for name, block in names:
        assert block_index(name) == block, name
        if block is not None:
            assert layer_of(name) == f"layer.{block}", name
    outside = {layer_of(name) for name, block in names if block is None}
    assert "embeddings" in outside and outside <= {"embeddings", "other"}
    kinds = {module_kind(name) for name, block in names if block is not None}
    assert {"attention", "mlp", "layernorm"} <= kinds


class _Stack(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.layer = nn.ModuleList(nn.Linear(2, 2) for _ in range(n))


def test_transformer_blocks_is_the_longest_named_block_list():
    model = nn.Module()
    model.heads = nn.ModuleList(nn.Linear(2, 2) for _ in range(9))  # not a block-list name
    model.short = _Stack(2)
    model.long = _Stack(4)
    assert transformer_blocks(model) is model.long.layer
    assert transformer_blocks(nn.Sequential(nn.Linear(2, 2))) is None
