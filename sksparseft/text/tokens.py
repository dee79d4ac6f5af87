"""Tokenising texts and discovering task-specific token groups (fit stages "load" and "token_groups")."""

from __future__ import annotations

import warnings

from dataclasses import dataclass

import numpy as np
from scipy import sparse


@dataclass(frozen=True)
class TokenGroup:
    """A contiguous subword n-gram that tells about the label.

    Attributes
    ----------
    text : str
        The n-gram as readable text (``tokenizer.decode``).
    token_ids : tuple of int
        Its subword ids.
    score : float
        Information gain about the label, weighted by log document frequency.
    label : object
        The class it is most associated with.
    count : int
        Number of training texts that contain it.
    pieces : tuple of int
        With adaptive tokenization, the subword ids the group was made of before it
        became the one new token in ``token_ids``; empty otherwise.
    """

    text: str
    token_ids: tuple
    score: float
    label: object
    count: int
    pieces: tuple = ()


def encode(tokenizer, texts, max_length, warn=None):
    """Tokenise ``texts`` into padded ``input_ids``/``attention_mask`` int64 arrays.

    Padding is to the longest text (capped at ``max_length``); batches trim it further. Texts
    longer than ``max_length`` tokens are cut to it; with ``warn`` (what the texts are, e.g.
    "training texts") a warning says how many were.
    """
    if warn:
        _warn_truncated(tokenizer, texts, max_length, warn)
    out = tokenizer(
        list(texts),
        truncation=True,
        max_length=max_length,
        padding="longest",
        return_attention_mask=True,
        return_tensors="np",
    )
    return {
        "input_ids": np.ascontiguousarray(out["input_ids"], dtype=np.int64),
        "attention_mask": np.ascontiguousarray(out["attention_mask"], dtype=np.int64),
    }


def _warn_truncated(tokenizer, texts, max_length, what):
    # Encoded one token past the limit: a text that reaches it was cut (special tokens included).
    ids = tokenizer(list(texts), truncation=True, max_length=max_length + 1, return_attention_mask=False,
                    return_token_type_ids=False)["input_ids"]
    cut = sum(len(row) > max_length for row in ids)
    if cut:
        warnings.warn(f"{cut} of {len(ids)} {what} are longer than max_length={max_length} tokens and are cut to "
                      f"their first {max_length}; raise max_length to use the rest (each pass gets slower)",
                      UserWarning, stacklevel=3)


def content_sequences(encodings, special_ids):
    """The non-special, non-padding token ids of every encoded text, with their positions."""
    ids, mask = encodings["input_ids"], encodings["attention_mask"]
    special = np.isin(ids, np.fromiter(special_ids, dtype=np.int64)) if special_ids else np.zeros_like(ids, bool)
    keep = (mask == 1) & ~special
    seqs = []
    for row_ids, row_keep in zip(ids, keep):
        pos = np.flatnonzero(row_keep)
        seqs.append((row_ids[pos].tolist(), pos))
    return seqs


def _ngram_counts(sequences, y, n_classes, max_ngram):
    """``(n-grams, csr counts n-gram x class)`` of document-level occurrences (one pass over the tokens)."""
    vocab = {}
    rows, cols = [], []
    for seq, label in zip(sequences, y):
        seen = set()
        n_tok = len(seq)
        for n in range(1, max_ngram + 1):
            for i in range(n_tok - n + 1):
                seen.add(tuple(seq[i : i + n]))
        labels = label if isinstance(label, list) else (label,)  # multi-label: every label of the text
        for gram in seen:
            idx = vocab.setdefault(gram, len(vocab))
            for lab in labels:
                rows.append(idx)
                cols.append(lab)
    if not vocab:
        return [], None
    counts = sparse.coo_matrix(
        (np.ones(len(rows), dtype=np.float64), (np.asarray(rows), np.asarray(cols))),
        shape=(len(vocab), n_classes),
    ).tocsr()
    return list(vocab), counts


def _non_redundant(grams, doc_freq, candidates):
    """Drop a shorter n-gram that only ever occurs inside one longer candidate.

    It adds nothing and reads worse ("over", "##draft" vs "overdraft").
    """
    if candidates.size == 0:
        return candidates
    cand_set = {grams[i]: i for i in candidates}
    redundant = set()
    for i in candidates:
        gram = grams[i]
        if len(gram) < 2:
            continue
        for n in range(1, len(gram)):
            for j in range(len(gram) - n + 1):
                sub = cand_set.get(gram[j : j + n])
                if sub is not None and doc_freq[sub] == doc_freq[i]:
                    redundant.add(sub)
    return np.asarray([i for i in candidates if i not in redundant], dtype=np.int64)


def discover_token_groups(sequences, y, n_classes, *, n_groups, max_ngram, min_count, decode, classes=None, smoothing=1.0):
    """Score all subword n-grams by what they tell about the label; keep the top ``n_groups``.

    Parameters
    ----------
    sequences : list of list of int
        Content token ids of each training text.
    y : ndarray of int
        Class index of each text, or a 2-D 0/1 indicator (multi-label): a text then counts
        towards each of its labels.
    n_classes : int
    n_groups, max_ngram, min_count : int
        How many groups to keep, the longest n-gram, the fewest texts a group must occur in.
    decode : callable
        Turns a list of token ids into text.
    classes : array-like, optional
        Class labels used to name each group's most associated class.
    smoothing : float
        Dirichlet smoothing of P(c|g) towards the class prior.

    Returns
    -------
    list of TokenGroup, best first.
    """
    y = np.asarray(y)
    multilabel = y.ndim == 2
    grams, counts = _ngram_counts(sequences, [np.flatnonzero(r).tolist() for r in y] if multilabel else y,
                                  n_classes, max_ngram)
    if not grams:
        return []
    doc_freq = np.asarray(counts.sum(axis=1)).ravel()
    candidates = _non_redundant(grams, doc_freq, np.flatnonzero(doc_freq >= min_count))
    if candidates.size == 0:
        return []

    prior = (y.sum(axis=0) if multilabel else np.bincount(y, minlength=n_classes)).astype(np.float64)
    prior = prior / prior.sum()
    c = counts[candidates].toarray()
    n_g = c.sum(axis=1, keepdims=True)
    # Information gain of seeing g: KL(P(c|g) || P(c)), smoothed towards the prior.
    p_cg = (c + smoothing * prior) / (n_g + smoothing)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(p_cg > 0, p_cg * np.log(p_cg / prior), 0.0).sum(axis=1)
    score = kl * np.log1p(n_g.ravel())
    order = np.lexsort((candidates, -score))[:n_groups]  # ties broken by first occurrence
    groups = []
    for k in order:
        i = candidates[k]
        ids = grams[i]
        best = int(np.argmax(p_cg[k]))
        groups.append(
            TokenGroup(
                text=decode(list(ids)),
                token_ids=tuple(int(t) for t in ids),
                score=float(score[k]),
                label=classes[best] if classes is not None else best,
                count=int(doc_freq[i]),
            )
        )
    return groups


def occurrences(row, groups):
    """``{group index: [positions]}`` of every token group found in the token id list ``row``."""
    by_first = {}
    for gi, g in enumerate(groups):
        by_first.setdefault(g.token_ids[0], []).append(gi)
    found = {}
    for i, t in enumerate(row):
        for gi in by_first.get(t, ()):
            ids = groups[gi].token_ids
            if tuple(row[i : i + len(ids)]) == tuple(ids):
                found.setdefault(gi, set()).update(range(i, i + len(ids)))
    return {gi: sorted(pos) for gi, pos in found.items()}


def group_positions(encodings, groups):
    """A 0/1 array, shaped like ``input_ids``, marking the positions a token group covers."""
    ids, mask = encodings["input_ids"], encodings["attention_mask"]
    focus = np.zeros(ids.shape, dtype=np.int64)
    for r in range(ids.shape[0]):
        row = ids[r, : int(mask[r].sum())].tolist()
        for pos in occurrences(row, groups).values():
            focus[r, pos] = 1
    return focus


def group_token_ids(groups):
    """Sorted unique token ids that make up the token groups."""
    return sorted({t for g in groups for t in g.token_ids})
