"""Running a fitted (or fitting) module over encoded texts without gradients: logits or pooled features."""

from __future__ import annotations

import numpy as np
import torch

from .batching import length_sorted_batches, to_batch


def eval_batch_size(batch_size):
    """Texts per inference batch (probe features, validation, predict): no gradients, so larger."""
    return max(batch_size, 64)


@torch.inference_mode()
def run_inference(module, encodings, batch_size, device, what="logits", progress=None):
    """Logits (or pooled features) of every encoded text, in input order."""
    n = encodings["input_ids"].shape[0]
    was_training = module.training
    module.eval()
    out = None
    batches = length_sorted_batches(encodings, batch_size)
    try:
        for rows in progress(batches) if progress else batches:
            b = to_batch(encodings, rows, device)
            res = module.features(b["input_ids"], b["attention_mask"]) if what == "features" else module(b["input_ids"], b["attention_mask"])
            res = res.float().cpu().numpy()
            if out is None:
                out = np.empty((n, res.shape[1]), dtype=np.float32)
            out[rows] = res
    finally:
        module.train(was_training)
    if out is None:
        out = np.empty((0, module.head.out_features if what == "logits" else module.head.in_features), dtype=np.float32)
    return out
