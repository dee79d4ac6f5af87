"""Reading tags off per-word probabilities: the best tag of each word, or the best valid IOB2 sequence.

An IOB2 tag ``I-x`` continues a slot of type ``x``: after ``O``, at the start of a text or after a
slot of another type it is invalid, and entity-level scoring reads it as a new slot. ``constrained``
decoding (Viterbi over the words' log-probabilities, invalid transitions ruled out) gives the most
probable sequence that is valid, as named-entity taggers customarily do.
"""

from __future__ import annotations

import numpy as np


def allowed_transitions(tags):
    """``(T + 1, T)`` booleans: row ``i`` (row ``T``: the start of a text) may be followed by tag ``j``."""
    tags = [str(t) for t in tags]
    allowed = np.ones((len(tags) + 1, len(tags)), dtype=bool)
    for j, t in enumerate(tags):
        if t.startswith("I-"):
            allowed[:, j] = [p in (f"B-{t[2:]}", t) for p in tags] + [False]
    return allowed


def viterbi(log_proba, allowed):
    """The index sequence of greatest summed log-probability among those ``allowed`` permits."""
    n, n_tags = log_proba.shape
    step = np.where(allowed[:n_tags], 0.0, -np.inf)
    score = log_proba[0] + np.where(allowed[n_tags], 0.0, -np.inf)
    back = np.zeros((n, n_tags), dtype=np.int64)
    for i in range(1, n):
        candidates = score[:, None] + step
        back[i] = candidates.argmax(axis=0)
        score = candidates[back[i], np.arange(n_tags)] + log_proba[i]
    path = [int(score.argmax())]
    for i in range(n - 1, 0, -1):
        path.append(int(back[i, path[-1]]))
    return path[::-1]


def decode(probas, tags, scheme, decoding):
    """Each text's tags from its ``(n_words, n_tags)`` probabilities."""
    tags = np.asarray(tags)
    if decoding == "argmax" or scheme != "iob2":
        return [tags[p.argmax(axis=1)].tolist() for p in probas]
    allowed = allowed_transitions(tags)
    if not allowed[-1].any():  # no tag may start a text (only I- tags): nothing to constrain to
        return [tags[p.argmax(axis=1)].tolist() for p in probas]
    out = []
    for p in probas:
        out.append(tags[viterbi(np.log(np.maximum(p, 1e-300)), allowed)].tolist() if len(p) else [])
    return out
