"""The fits whose predictions are pinned bit for bit by tests/test_reference.py."""

from __future__ import annotations

import shutil

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")

# contrastive_epochs=0: the fits these cases pinned before the contrastive stage existed (0.2.0).
# strategy="token_sparse": the default of 0.2.0, which the "default" case pinned.
# precision="float32": what these cases pinned; "auto" trains `random` in bf16 on CPUs that have it.
# patience=3: the default these cases pinned (0.7.8's default is 2).
BASE = dict(max_epochs=3, batch_size=8, n_sensitivity_samples=16, device="cpu", random_state=0, contrastive_epochs=0,
            strategy="token_sparse", precision="float32", patience=3)

CASES = {
    "default": dict(BASE),
    "fisher": dict(BASE, strategy="fisher"),
    "random": dict(BASE, strategy="random"),
    "bitfit": dict(BASE, strategy="bitfit"),
    "layers": dict(BASE, strategy="layers", strategy_options={"n_layers": 1}),
    "full": dict(BASE, strategy="full"),
    "lora": dict(BASE, strategy="lora", strategy_options={"r": 4}),
    "prefix": dict(BASE, strategy="prefix", strategy_options={"n_prefix": 4}),
    "min_layer_cached": dict(BASE, strategy_options={"min_layer": 1, "cache_frozen": True}),
    "adaptive": dict(BASE, adaptive_tokenization=True),
    "average_epochs": dict(BASE, average_epochs=True),
    "either_or_no_refit": dict(BASE, interpolate_weights=False, refit_head=False),
    "no_validation": dict(BASE, validation_fraction=0.0),
    "random_head_balanced": dict(BASE, head_init="random", class_weight="balanced", density=0.05),
    # The default of 0.3.0 on: the contrastive stage before training.
    "contrastive": dict(BASE, contrastive_epochs=2),
    "default_030": dict(BASE, strategy="random", contrastive_epochs=2),
    "contrastive_full": dict(BASE, strategy="full", contrastive_epochs=1),
}

# Model files of the current format, fitted against the packaged backbone: later versions must load them.
LEGACY = {
    "token_sparse": dict(BASE, max_epochs=1, density=0.001),
    "lora": dict(BASE, max_epochs=1, strategy="lora", strategy_options={"r": 2}),
}

QUERIES = [
    "my card has not arrived yet",
    "i want my money back",
    "how do i change my pin",
    "refund for the card please",
    "something else entirely",
]


def toy_texts():
    """The toy three-intent task of conftest.py, with one unbalanced class."""
    cues = {
        "card": ["my card has not arrived", "where is my new card", "card delivery is late", "when will the card come"],
        "refund": ["i want a refund please", "refund my payment", "how do i get my money back refund", "refund not received"],
        "pin": ["i forgot my pin", "change my pin code", "pin is blocked", "reset the pin"],
    }
    texts, labels = [], []
    for label, sents in cues.items():
        for i in range(4 if label != "pin" else 3):
            for s in sents:
                texts.append(f"{s} {'today' if i % 2 else 'now'}")
                labels.append(label)
    return texts, labels


def make_tiny_bert(folder):
    """A 2-layer BERT built from a config (seed 0), with the packaged model's tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    from sksparseft.model.backbone import resolve_model_path

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    source = resolve_model_path("all-MiniLM-L6-v2")
    for name in TOKENIZER_FILES:
        shutil.copy(f"{source}/{name}", f"{folder}/{name}")
    return str(folder)
