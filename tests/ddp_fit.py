"""Run by tests/test_accelerate.py under torchrun: data-parallel work on CPU processes (gloo).

``fit``: a whole data-parallel fit, every stage included. ``contrastive``: one epoch of the
contrastive stage alone, without dropout, so that the test can compare it with one process.
"""

import json
import sys

import numpy as np
import torch
import torch.distributed as dist

from sksparseft import TokenSparseClassifier

CUES = {"card": ["my card has not arrived", "where is my new card", "card delivery is late"],
        "refund": ["i want a refund please", "refund my payment", "refund not received"],
        "pin": ["i forgot my pin", "change my pin code", "pin is blocked"]}


def toy_texts():
    texts, labels = [], []
    for label, sents in CUES.items():
        for i in range(6):
            for s in sents:
                texts.append(f"{s} {i}")
                labels.append(label)
    return texts, labels


def contrastive_weights(model, distributed):
    """The top block's weights after one contrastive epoch (dropout off), as lists by name."""
    from sksparseft.fit.contrastive import train_contrastive
    from sksparseft.model.backbone import load_backbone
    from sksparseft.model.module import ClassifierModule
    from sksparseft.text.tokens import encode

    texts, labels = toy_texts()
    tokenizer, encoder, _ = load_backbone(model)
    torch.manual_seed(0)
    module = ClassifierModule(encoder, 3, pooling="mean", dropout=0.0)
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    top = [n for n, p in module.encoder.named_parameters() if ".layer.1." in n]
    for n, p in module.encoder.named_parameters():
        p.requires_grad_(n in top)
    y = np.asarray([sorted(CUES).index(c) for c in labels])
    losses = train_contrastive(module, encode(tokenizer, texts, 32), y, epochs=1, batch_size=8, learning_rate=1e-3,
                               weight_decay=0.0, device=torch.device("cpu"), random_state=0, distributed=distributed)
    weights = dict(module.encoder.named_parameters())
    return {"losses": losses, "weights": {n: weights[n].detach().flatten().tolist() for n in top}}


class RecordingClassifier(TokenSparseClassifier):
    """Keeps the contrastive stage's losses (the step a subclass may override), to show the stage ran."""

    def run_contrastive(self, state, **options):
        self.contrastive_losses = super().run_contrastive(state, **options)
        return self.contrastive_losses


def fit(model):
    texts, labels = toy_texts()
    # Every sixth label wrong: the processes' shares of the validation texts then score differently,
    # so a process that scored only its own share would decide early stopping on its own.
    names = sorted(CUES)
    labels = [names[(names.index(c) + 1) % 3] if i % 6 == 5 else c for i, c in enumerate(labels)]
    # Every stage, averaging too; six epochs with a short last batch, so that processes whose batch
    # order followed their own (dropout-drawn) random stream would cut different batches and hang.
    clf = RecordingClassifier(model, strategy="token_sparse", accelerate=True, device="cpu", max_epochs=6, batch_size=8,
                              patience=0, validation_fraction=0.2, random_state=0,
                              learning_rate=1e-2, contrastive_epochs=2, average_epochs=True)
    clf.fit(texts, labels)
    delta = {n: v.tolist() for n, (i, v) in clf.module_.delta().items()}
    return {"world": dist.get_world_size(), "proba": np.round(clf.predict_proba(texts), 6).tolist(), "delta": delta,
            "epochs": len(clf.history_) - 1, "selected": clf.mask_.n_selected, "interpolation": clf.interpolation_,
            "contrastive_losses": getattr(clf, "contrastive_losses", None),
            "batches": [row.get("train_batch_count") for row in clf.history_ if "train_batch_count" in row],
            "valid_acc": [row.get("valid_acc") for row in clf.history_ if "train_batch_count" in row]}


def main(mode, model, out):
    if mode == "contrastive":
        dist.init_process_group("gloo")
        result = contrastive_weights(model, distributed=True)
        result["world"] = dist.get_world_size()
    else:
        result = fit(model)
    with open(f"{out}.{dist.get_rank()}", "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:4])
