"""The lab's fixtures: the product suite's tiny model and toy data (tests/conftest.py), built the same way."""

import shutil

import pytest

from sksparseft.model.backbone import resolve_model_path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@pytest.fixture(scope="package")
def tiny_model(tmp_path_factory):
    """A 2-layer BERT built from a config (seeded), with the embedded model's tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    source = resolve_model_path("all-MiniLM-L6-v2")
    for name in TOKENIZER_FILES:
        shutil.copy(f"{source}/{name}", folder / name)
    return str(folder)


@pytest.fixture(scope="package")
def toy_data():
    """A small three-intent task with clear cue words."""
    texts, labels = [], []
    cues = {
        "card": ["my card has not arrived", "where is my new card", "card delivery is late", "when will the card come"],
        "refund": ["i want a refund please", "refund my payment", "how do i get my money back refund", "refund not received"],
        "pin": ["i forgot my pin", "change my pin code", "pin is blocked", "reset the pin"],
    }
    for label, sents in cues.items():
        for i in range(4):
            for s in sents:
                texts.append(f"{s} {'today' if i % 2 else 'now'}")
                labels.append(label)
    return texts, labels
