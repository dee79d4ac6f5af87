"""Run by tests/test_accelerate.py under torchrun: a data-parallel fit on CPU processes (gloo)."""

import json
import sys

import numpy as np
import torch.distributed as dist

from sksparseft import TokenSparseClassifier


def main(model, out):
    texts, labels = [], []
    cues = {"card": ["my card has not arrived", "where is my new card", "card delivery is late"],
            "refund": ["i want a refund please", "refund my payment", "refund not received"],
            "pin": ["i forgot my pin", "change my pin code", "pin is blocked"]}
    for label, sents in cues.items():
        for i in range(6):
            for s in sents:
                texts.append(f"{s} {i}")
                labels.append(label)
    clf = TokenSparseClassifier(model, strategy="token_sparse", accelerate=True, device="cpu", max_epochs=2, batch_size=8,
                                n_sensitivity_samples=8, validation_fraction=0.2, random_state=0, learning_rate=1e-2,
                                average_epochs=True)  # the averaging path under DDP too (the contrastive stage is skipped)
    clf.fit(texts, labels)
    rank, world = dist.get_rank(), dist.get_world_size()
    delta = {n: v.tolist() for n, (i, v) in clf.module_.delta().items()}
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"world": world, "proba": np.round(clf.predict_proba(texts), 6).tolist(), "delta": delta,
                   "epochs": len(clf.history_) - 1, "selected": clf.mask_.n_selected,
                   "interpolation": clf.interpolation_}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
