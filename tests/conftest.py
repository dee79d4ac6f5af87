import shutil

import pytest

from sksparseft.model.backbone import resolve_model_path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def _tiny_backbone(folder, model_class, config):
    """Save ``model_class(config)`` (seeded) in ``folder`` with the embedded model's tokenizer files."""
    import torch

    torch.manual_seed(0)
    model_class(config).save_pretrained(folder)
    source = resolve_model_path("all-MiniLM-L6-v2")
    for name in TOKENIZER_FILES:
        shutil.copy(f"{source}/{name}", folder / name)
    return str(folder)


@pytest.fixture(scope="package")
def tiny_model(tmp_path_factory):
    """A 2-layer BERT built from a config, with the embedded model's tokenizer."""
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    return _tiny_backbone(tmp_path_factory.mktemp("tiny-bert"), BertModel, config)


@pytest.fixture(scope="package")
def tiny_model3(tmp_path_factory):
    """The tiny BERT with three blocks: a cached prefix, a block trained in one stage only, a top block."""
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    return _tiny_backbone(tmp_path_factory.mktemp("tiny-bert3"), BertModel, config)


@pytest.fixture(scope="package")
def toy_data():
    """A small three-intent task with clear cue words (``cases.toy_task``)."""
    from cases import toy_task

    return toy_task()


@pytest.fixture(scope="package")
def tiny_decoder(tmp_path_factory):
    """A 2-layer Llama-style decoder built from a config, with the embedded model's tokenizer."""
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128,
                         architectures=["LlamaForCausalLM"])
    return _tiny_backbone(tmp_path_factory.mktemp("tiny-llama"), LlamaModel, config)


@pytest.fixture(scope="package")
def grouped_model(tiny_model, toy_data):
    """A fitted tiny model with 12 token groups (explanations and plots read it; nothing changes it)."""
    from cases import FAST
    from sksparseft import TokenSparseClassifier

    settings = dict(FAST, random_state=0, validation_fraction=0.0, learning_rate=1e-2)
    return TokenSparseClassifier(tiny_model, n_token_groups=12, **settings).fit(*toy_data)
