"""Why the tagger gave a slot: the token groups inside it, and the words around it that hold it up."""

from __future__ import annotations

import numpy as np

from ..text.tokens import occurrences
from .decoding import decode
from .stages import _spans


def explain_slots(est, words, top=5):
    """Per text: its words, tags and, for each predicted slot, what holds it up.

    Each slot is a dict of ``slot`` (its type), ``text`` (its words), ``probability`` (the mean
    probability of its tags over its words), ``groups`` (the slot type's token groups found inside
    it, as ``fit`` discovered them) and ``context``: up to ``top`` other words of the text, each
    with the ``effect`` of replacing it by the tokenizer's mask (or unknown) token, the drop in the
    slot's probability, largest first.
    """
    tokenizer = est.tokenizer_
    filler = tokenizer.mask_token or tokenizer.unk_token
    out = []
    for text in words:
        variants = [text] + [text[:i] + [filler] + text[i + 1:] for i in range(len(text))]
        proba = est.predict_proba(variants)
        tags = decode([proba[0]], est.tags_, est.tag_scheme_, est.decoding)[0]
        slots = []
        for span, kind in _spans(tags, est.tag_scheme_):
            span = sorted(span)
            cols = [int(np.flatnonzero(est.tags_ == tags[i])[0]) for i in span]

            def strength(p, span=span, cols=cols):
                return float(np.mean([p[i, c] for i, c in zip(span, cols)]))

            base = strength(proba[0])
            context = sorted(({"word": text[i], "effect": base - strength(proba[i + 1])}
                              for i in range(len(text)) if i not in span), key=lambda r: -r["effect"])
            ids = tokenizer([text[i] for i in span], is_split_into_words=True, add_special_tokens=False)["input_ids"]
            groups = [est.token_groups_[g].text for g in occurrences(ids, est.token_groups_)
                      if est.token_groups_[g].label == kind]
            slots.append({"slot": kind, "text": " ".join(text[i] for i in span), "probability": base,
                          "groups": groups, "context": context[:top]})
        out.append({"words": list(text), "tags": tags, "slots": slots})
    return out
