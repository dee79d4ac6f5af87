"""What the fitted model learned, readable: token groups per class, and per-text explanations.

An explanation is an occlusion test on the token groups: each group found in a text is
removed from it (its subword tokens deleted, the rest re-encoded as is) and the drop in the
predicted class's probability is that group's effect. Positive: the group pushed the
prediction; negative: it pulled away from it.
"""

from __future__ import annotations

import numpy as np

from .text.tokens import encode, occurrences
from .model.inference import run_inference


def token_group_table(groups, classes, top=None):
    """Rows ``{class, rank, group, score, count}``: each class's token groups, best first."""
    rows = []
    for c in classes:
        mine = sorted((g for g in groups if g.label == c), key=lambda g: -g.score)
        for rank, g in enumerate(mine[:top] if top else mine, start=1):
            rows.append({"class": c, "rank": rank, "group": g.text, "score": float(g.score), "count": int(g.count)})
    return rows


def explain(est, texts, top=5):
    """Per text: prediction, its probability, and the ``top`` groups by absolute effect.

    The effect is measured on the text's most probable class (multi-label: its most
    probable label); ``prediction`` is what ``predict`` returns for the text (the unknown
    label when rejected, the indicator row for multi-label).
    """
    enc = encode(est.tokenizer_, texts, est.max_length)
    batch = est._eval_batch()
    proba = est._probabilities(run_inference(est.module_, enc, batch, est.device_))
    pred = proba.argmax(axis=1)
    labels = est._labels(proba, est._rejection_scores(texts, proba))
    groups = est.token_groups_
    pad = est.tokenizer_.pad_token_id

    variants, owners = [], []
    for i in range(len(texts)):
        length = int(enc["attention_mask"][i].sum())
        row = enc["input_ids"][i, :length].tolist()
        for gi, pos in occurrences(row, groups).items():
            drop = set(pos)
            variants.append([t for j, t in enumerate(row) if j not in drop])
            owners.append((i, gi))
    effects = {}
    if variants:
        width = max(len(v) for v in variants)
        ids = np.full((len(variants), max(width, 1)), pad, dtype=np.int64)
        mask = np.zeros_like(ids)
        for k, v in enumerate(variants):
            ids[k, : len(v)] = v
            mask[k, : len(v)] = 1
        logits = run_inference(est.module_, {"input_ids": ids, "attention_mask": mask}, batch, est.device_)
        occluded = est._probabilities(logits)
        for k, (i, gi) in enumerate(owners):
            effects.setdefault(i, []).append((gi, float(proba[i, pred[i]] - occluded[k, pred[i]])))

    out = []
    for i, text in enumerate(texts):
        found = sorted(effects.get(i, []), key=lambda e: -abs(e[1]))[:top]
        out.append({
            "text": text,
            "prediction": labels[i],
            "class": est.classes_[pred[i]],
            "probability": float(proba[i, pred[i]]),
            "groups": [{"group": groups[gi].text, "class": groups[gi].label, "effect": eff} for gi, eff in found],
        })
    return out
