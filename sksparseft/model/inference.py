"""Running a fitted (or fitting) module over encoded texts without gradients: logits or pooled features."""

from __future__ import annotations

import numpy as np
import torch

from ..text.tokens import encode
from .batching import length_sorted_batches, to_batch
from .devices import oom_advice

#: ``predict`` tokenises and runs at most this many texts at a time.
PREDICT_CHUNK = 4096


def progress_bar(verbose, desc):
    """A tqdm wrapper for the loop called ``desc`` when ``verbose``, else None."""
    if not verbose:
        return None
    from tqdm.auto import tqdm

    return lambda it: tqdm(it, desc=desc, leave=False)


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


def predict_logits(module, tokenizer, texts, *, max_length, batch_size, device, n_outputs, progress=None):
    """Logits of ``module`` for every text, tokenised and run :data:`PREDICT_CHUNK` texts at a time.

    In chunks, so that the token arrays of a long input never exist at once (peak memory stays flat).
    """
    out = np.empty((len(texts), n_outputs), dtype=np.float32)
    starts = range(0, len(texts), PREDICT_CHUNK)
    # A long input's bar counts chunks; a short one's, batches.
    chunks, progress = (progress(starts), None) if progress and len(starts) > 1 else (starts, progress)
    for start in chunks:
        enc = encode(tokenizer, texts[start:start + PREDICT_CHUNK], max_length)
        with oom_advice("prediction", batch_size, max_length):
            out[start:start + PREDICT_CHUNK] = run_inference(module, enc, eval_batch_size(batch_size), device,
                                                             progress=progress)
    return out
