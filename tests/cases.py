"""What the tests share: one set of fast settings and the table of strategies.

A module, not conftest.py: ``parametrize`` reads the table at import time, where fixtures
cannot reach, and pytest advises against importing conftest.py.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from skorch.callbacks import Callback

from sksparseft.strategies import STRATEGIES

# Two short epochs on the config-built tiny models; a test adds what it needs on top.
FAST = dict(max_epochs=2, batch_size=8, device="cpu")


def toy_task():
    """A small three-intent task with clear cue words: 48 texts, 16 a class (the ``toy_data`` fixture)."""
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

# Every registered strategy, with options small enough for the tiny models.
STRATEGY_CASES = [
    ("token_sparse", {}),
    ("fisher", {}),
    ("random", {}),
    ("random_rows", {}),
    ("bitfit", {}),
    ("layers", {"n_layers": 1}),
    ("full", {}),
    ("lora", {"r": 4}),
    ("prefix", {"n_prefix": 4}),
]
ADAPTERS = {name for name, cls in STRATEGIES.items() if cls.prefixes}
EXPORTABLE = [(name, options) for name, options in STRATEGY_CASES if STRATEGIES[name].export_error is None]
NOT_EXPORTABLE = [(name, options) for name, options in STRATEGY_CASES if STRATEGIES[name].export_error]


class EpochLog(Callback):
    """A skorch callback that records the number of each epoch a fit runs (``epochs``).

    A fit resumed from a checkpoint runs only the epochs the checkpoint has not done, numbered on
    from it; a fit that starts afresh runs them all from 1.
    """

    def __init__(self):
        self.epochs = []

    def on_epoch_begin(self, net, **kwargs):
        # At the epoch's start: early stopping ends an epoch by raising before later callbacks see its end.
        self.epochs.append(int(net.history[-1]["epoch"]))


def tiny_module(model_path, n_classes=3):
    """``(tokenizer, ClassifierModule)`` over a backbone folder: mean pooling, no dropout."""
    from sksparseft.model.backbone import load_backbone
    from sksparseft.model.module import ClassifierModule

    tok, enc, _ = load_backbone(model_path)
    return tok, ClassifierModule(enc, n_classes, pooling="mean", dropout=0.0)


def tiny_batch(tok):
    """Three short texts: ``(input_ids, attention_mask, encodings)``."""
    import torch

    from sksparseft.text.tokens import encode

    e = encode(tok, ["my card is late", "refund please", "pin"], 16)
    return torch.as_tensor(e["input_ids"]), torch.as_tensor(e["attention_mask"]), e


#: Marks a test that runs an exported ONNX graph.
NEEDS_ONNX = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None,
    reason="needs onnx, onnxscript and onnxruntime (pip install 'sksparseft[onnx]')")


def run_onnx(path, clf, texts):
    """``(metadata, outputs)`` of the ONNX graph at ``path`` run by onnxruntime on ``texts``, tokenised as ``clf`` does."""
    import onnx
    import onnxruntime as ort

    meta = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["sksparseft"])
    enc = clf.tokenizer_(list(texts), padding=True, truncation=True, max_length=clf.max_length, return_tensors="np")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = sess.run(None, {"input_ids": enc["input_ids"].astype(np.int64),
                              "attention_mask": enc["attention_mask"].astype(np.int64)})
    return meta, outputs


def slot_task(n=60, seed=0):
    """A small generated intents-and-slots task: ``(word lists, (intent, IOB2 tags) pairs)``.

    Three intents, each with its own phrasings; slots for cities (from, to, in), dates and cuisines,
    some of two words. Generated here, so its licence is the package's.
    """
    rng = np.random.default_rng(seed)
    cities = ["boston", "denver", "new york", "san francisco", "paris", "tokyo"]
    dates = ["monday", "tomorrow", "june fourth", "next friday"]
    cuisines = ["thai", "italian", "sushi", "indian"]
    frames = {
        "book_flight": ["book a flight from {from} to {to} on {date}", "i want to fly from {from} to {to}",
                        "flights to {to} from {from} {date}"],
        "weather": ["what is the weather in {city} on {date}", "will it rain in {city} {date}"],
        "restaurant": ["find a {cuisine} restaurant in {city}", "i want {cuisine} food near {city}"],
    }
    fillers = {"from": cities, "to": cities, "city": cities, "date": dates, "cuisine": cuisines}
    X, y = [], []
    for i in range(n):
        intent = list(frames)[i % 3]
        template = frames[intent][rng.integers(len(frames[intent]))]
        words, tags = [], []
        for piece in template.split():
            if piece.startswith("{"):
                slot = piece.strip("{}")
                value = fillers[slot][rng.integers(len(fillers[slot]))].split()
                words += value
                tags += [f"B-{slot}"] + [f"I-{slot}"] * (len(value) - 1)
            else:
                words.append(piece)
                tags.append("O")
        X.append(words)
        y.append((intent, tags))
    return X, y
