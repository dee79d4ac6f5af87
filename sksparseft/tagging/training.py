"""The tagger's finetune: AdamW over what the strategy made trainable, best epoch on validation kept."""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from ..fit.training import WarmupLinearDecay
from ..model.batching import LengthBucketSampler
from .data import rows_of, targets

#: keys of the encodings that are per piece (trimmed with the batch) and per text
_PER_PIECE = ("input_ids", "attention_mask", "labels", "focus")


def batch_of(encodings, rows, device):
    """Tensors of ``rows``, cut to the longest of them (input_ids, attention_mask, focus; targets)."""
    part = rows_of(encodings, np.asarray(rows))
    width = max(int(part["attention_mask"].sum(axis=1).max()), 1)
    batch = {k: torch.as_tensor(part[k][:, :width], device=device) for k in _PER_PIECE if k in part}
    if "labels" in part:
        batch["target"] = torch.as_tensor(targets({k: v[:, :width] if k == "labels" else v for k, v in part.items()}),
                                          device=device)
    return batch


def train_tagger(module, encodings, kind, *, epochs, batch_size, lr, head_lr, weight_decay, device, seed, score,
                 patience, progress=None, say=None, warmup_fraction=0.06):
    """Train ``module`` for up to ``epochs`` epochs; returns ``(history rows, mean loss per epoch, interrupted)``.

    ``score(module)`` gives the validation ``(score, loss)`` after each epoch (None: no validation
    split): the best epoch's weights are restored at the end, and ``patience`` epochs without a
    better score stop training early (0: never). The gradient's norm is clipped at 1, as the classifier's is.
    """
    heads = [p for n, p in module.named_parameters() if p.requires_grad and n.split(".")[0] in ("head", "intent_head")]
    body = [p for n, p in module.named_parameters() if p.requires_grad and n.split(".")[0] not in ("head", "intent_head")]
    trainable = body + heads
    groups = [{"params": body, "lr": lr}] if body else []
    groups.append({"params": heads, "lr": head_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=weight_decay)
    lengths = encodings["attention_mask"].sum(axis=1)
    generator = torch.Generator().manual_seed(int(seed) % 2**63)
    sampler = LengthBucketSampler(lengths, batch_size, shuffle=True, generator=generator)
    total = epochs * len(sampler)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupLinearDecay(total, int(warmup_fraction * total)))
    history, losses, best, best_state, waited, interrupted = [], [], -np.inf, None, 0, False
    try:
        for epoch in range(1, epochs + 1):
            begin, module_losses = time.perf_counter(), []
            module.train()
            batches = list(sampler)
            for rows in progress(batches) if progress else batches:
                b = batch_of(encodings, rows, device)
                loss = kind.loss(module(b["input_ids"], b["attention_mask"]), b["target"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)  # as the classifier's net clips
                optimizer.step()
                schedule.step()
                module_losses.append(float(loss.detach()))
            losses.append(float(np.mean(module_losses)) if module_losses else float("nan"))
            row = {"epoch": epoch, "train_loss": losses[-1]}
            if not np.isfinite(losses[-1]):
                history.append(row)
                break
            if score is not None:
                row["valid_score"], row["valid_loss"] = score(module)
                if row["valid_score"] > best:
                    best, best_state, waited = row["valid_score"], module.trainable_state(), 0
                else:
                    waited += 1
            row["dur"] = time.perf_counter() - begin
            history.append(row)
            if say is not None:
                say(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch"))
            if score is not None and patience and waited >= patience:  # patience=0: no early stop
                break
    except KeyboardInterrupt:
        interrupted = True
        warnings.warn("training was interrupted; the tagger keeps the best weights so far", stacklevel=2)
    if best_state is not None:
        module.load_trainable_state_(best_state)
    return history, losses, interrupted
