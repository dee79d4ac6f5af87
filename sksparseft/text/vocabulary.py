"""Adaptive tokenization (optional, in fit stage "token_groups"): split words among the token groups become new tokens.

A token group that is one word split into pieces, such as "overdraft" (``over`` + ``##dra`` +
``##ft``), is added to the tokenizer as one whole-word token; its new embedding row starts
as the mean of its pieces' rows and is trained with the other token-group rows. Phrases
("top up", "an account") are not merged: measured, merging them cost accuracy (their words
lose what the encoder reads from their order and context). The tokenizer and the backbone
are extended together, and a saved model records the additions so the same rows are
rebuilt on load.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch

from .tokens import content_sequences, encode


@dataclass(frozen=True)
class AddedToken:
    """A vocabulary entry added by adaptive tokenization.

    Attributes
    ----------
    text : str
        The whole word or phrase the tokenizer now reads as one token.
    token_id : int
        Its id.
    pieces : tuple of int
        The subword ids it replaces; its embedding row starts as their mean.
    count : int
        Training texts in which the new token occurs.
    """

    text: str
    token_id: int
    pieces: tuple
    count: int


def _added(text):
    from tokenizers import AddedToken as HFAddedToken

    # Whole words only ("card" must not fire inside "cardholder"), the space before it
    # belongs to it (no stray space token for byte-level BPE), matched on normalised text
    # (lower-cased for uncased vocabularies) like every other word.
    return HFAddedToken(text, single_word=True, lstrip=True, rstrip=False, normalized=True)


def _doc_counts(tokenizer, texts, max_length, ids):
    enc = encode(tokenizer, texts, max_length)
    wanted = set(ids)
    counts = dict.fromkeys(ids, 0)
    for seq, _ in content_sequences(enc, set(tokenizer.all_special_ids)):
        for t in wanted.intersection(seq):
            counts[t] += 1
    return counts


def extend_tokenizer(tokenizer, groups, texts, *, min_count, max_length):
    """A copy of ``tokenizer`` with the token groups that are one split word as whole tokens.

    A candidate is kept only if, once added, it occurs in at least ``min_count`` of
    ``texts`` (a group made of pieces inside longer words never matches as a word).

    Returns
    -------
    tokenizer : the extended copy (``tokenizer`` itself is left unchanged)
    added : list of AddedToken
    """
    vocab = tokenizer.get_vocab()
    candidates = {}
    for g in groups:  # best first: a better group wins an overlap
        pieces = tuple(g.token_ids)
        if len(pieces) < 2:
            continue
        text = tokenizer.decode(list(pieces)).strip()
        # One word only: no phrase ("top up"), no punctuation at its ends ("atm?").
        if not text or any(ch.isspace() for ch in text) or not (text[0].isalnum() and text[-1].isalnum()):
            continue
        if text in vocab or text in candidates:
            continue
        # Overlapping tokens (pieces shared at an end) would split each other's matches.
        if any(_overlap(pieces, other) for other in candidates.values()):
            continue
        candidates[text] = pieces
    if not candidates:
        return tokenizer, []

    _, ids, counts = _with_tokens(tokenizer, list(candidates), texts, max_length)
    keep = [t for t in candidates if counts[ids[t]] >= min_count]
    if not keep:
        return tokenizer, []
    # Added again without the rejected ones, so that the kept ones get consecutive ids.
    out, ids, counts = _with_tokens(tokenizer, keep, texts, max_length)
    return out, [AddedToken(t, int(ids[t]), candidates[t], int(counts[ids[t]])) for t in keep]


def _with_tokens(tokenizer, words, texts, max_length):
    """A copy of ``tokenizer`` with ``words`` added, their ids, and the texts each occurs in."""
    out = copy.deepcopy(tokenizer)
    out.add_tokens([_added(w) for w in words])
    ids = {w: out.convert_tokens_to_ids(w) for w in words}
    return out, ids, _doc_counts(out, texts, max_length, list(ids.values()))


def _overlap(a, b):
    """True when one piece sequence contains the other or they share an end (``x y`` / ``y z``)."""
    if len(a) > len(b):
        a, b = b, a
    if any(b[i : i + len(a)] == a for i in range(len(b) - len(a) + 1)):
        return True
    return any(a[-k:] == b[:k] or b[-k:] == a[:k] for k in range(1, len(a)))


@torch.no_grad()
def extend_embeddings(encoder, added):
    """Give ``encoder`` a row per added token, each the mean of its pieces' rows (in place)."""
    if not added:
        return encoder
    emb = encoder.get_input_embeddings()
    n_rows = max(emb.weight.shape[0], max(a.token_id for a in added) + 1)
    if n_rows > emb.weight.shape[0]:
        encoder.resize_token_embeddings(n_rows, mean_resizing=False)
        emb = encoder.get_input_embeddings()
    weight = emb.weight
    for a in added:
        weight[a.token_id] = weight[list(a.pieces)].mean(0)
    return encoder


def merge_groups(groups, added):
    """The token groups with every added group's pieces replaced by its new token."""
    by_pieces = {a.pieces: a for a in added}
    out = []
    for g in groups:
        a = by_pieces.get(tuple(g.token_ids))
        out.append(g if a is None else dataclasses.replace(g, token_ids=(a.token_id,), pieces=a.pieces))
    return out


def added_to_json(added):
    return [dataclasses.asdict(a) for a in added]


def added_from_json(rows):
    return [AddedToken(r["text"], int(r["token_id"]), tuple(int(p) for p in r["pieces"]), int(r["count"])) for r in rows or []]



