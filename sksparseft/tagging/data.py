"""What a tagger is given and gives back: words, their tags, and the subword pieces the model sees.

``X`` holds texts (split into words on whitespace) or lists of words; ``y`` holds, per text, one
tag per word, or ``(intent, tags)`` pairs for the joint mode. The model sees subword pieces:
each word's tag sits on its first piece (:func:`align`), and its prediction is read there.
"""

from __future__ import annotations

import re
import warnings

import numpy as np

#: the label that marks "outside every slot" (IOB2's O)
OUTSIDE = "O"
#: the ignore index of the token loss: pieces that carry no tag (later pieces, specials, padding)
IGNORE = -100
_IOB2 = re.compile(r"^(O|[BI]-.+)$")


def validate_words(X, name="X"):
    """``X`` as a list of word lists, or a TypeError/ValueError naming the bad entry.

    A text is split on whitespace; a list (or tuple) of strings is taken as its words. A text with no
    word is an error: there is nothing to tag.
    """
    if X is None or isinstance(X, (str, bytes)):
        raise TypeError(f"{name} must be a list of texts or of word lists, got {type(X).__name__}"
                        + ("; wrap a single text in a list" if isinstance(X, (str, bytes)) else ""))
    if getattr(X, "ndim", 1) == 2 and X.shape[1] == 1:
        X = X[:, 0] if isinstance(X, np.ndarray) else X.iloc[:, 0]
    try:
        rows = list(X)
    except TypeError:
        raise TypeError(f"{name} must be a list of texts or of word lists, got {type(X).__name__}") from None
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, str):
            words = row.split()
        elif isinstance(row, (list, tuple, np.ndarray)):
            words = list(row)
            for j, w in enumerate(words):
                if not isinstance(w, str):
                    raise TypeError(f"{name}[{i}][{j}] is a {type(w).__name__}, not a str: {w!r:.60}")
                if not w or w.isspace():
                    raise ValueError(f"{name}[{i}][{j}] is an empty word; drop it (and its tag) before fitting")
        elif row is None or (isinstance(row, float) and np.isnan(row)):
            raise ValueError(f"{name}[{i}] is missing ({row!r}); drop or fill missing texts")
        else:
            raise TypeError(f"{name}[{i}] is a {type(row).__name__}, neither a text nor a list of words: {row!r:.60}")
        if not words:
            raise ValueError(f"{name}[{i}] is empty: a tagger needs at least one word per text")
        out.append([w.encode("utf-8", "replace").decode("utf-8") for w in words])
    return out


def is_joint(y):
    """Whether ``y`` holds ``(intent, tags)`` pairs (the joint mode) rather than tag lists."""
    first = next(iter(y), None)
    return (isinstance(first, (tuple, list)) and len(first) == 2 and not isinstance(first[0], (list, tuple, np.ndarray))
            and isinstance(first[1], (list, tuple, np.ndarray)))


def validate_tags(y, words, name="y"):
    """``(tags, intents)``: per text a list of str tags, one per word; intents a list, or None.

    Raises ValueError naming the first text whose tag count is not its word count.
    """
    if y is None or isinstance(y, (str, bytes)):
        raise TypeError(f"{name} must hold one list of tags per text (or (intent, tags) pairs), got {type(y).__name__}")
    rows = list(y)
    if len(rows) != len(words):
        raise ValueError(f"X holds {len(words)} texts but {name} holds {len(rows)} rows")
    joint = is_joint(rows)
    tags, intents = [], [] if joint else None
    for i, row in enumerate(rows):
        if is_joint([row]) != joint:
            raise ValueError(f"{name}[{i}] is " + ("a tag list but y[0] is an (intent, tags) pair" if joint else
                                                   "an (intent, tags) pair but y[0] is a tag list")
                             + "; give every row the same form")
        if joint:
            intent, row = row
            if intent is None or isinstance(intent, float) and np.isnan(intent):
                raise ValueError(f"{name}[{i}]'s intent is missing ({intent!r})")
            intents.append(intent)
        if isinstance(row, str) or not isinstance(row, (list, tuple, np.ndarray)):
            raise TypeError(f"{name}[{i}] must be a list of tags (one per word), got {type(row).__name__}: {row!r:.60}")
        bad = [t for t in row if not isinstance(t, str)]
        if bad:
            raise TypeError(f"{name}[{i}] holds a tag that is a {type(bad[0]).__name__}, not a str: {bad[0]!r:.60}")
        row = list(row)
        if len(row) != len(words[i]):
            raise ValueError(f"{name}[{i}] has {len(row)} tags but X[{i}] has {len(words[i])} words "
                             f"({' '.join(words[i])[:80]!r}); give one tag per word")
        tags.append(row)
    return tags, intents


def tag_scheme(tags):
    """``"iob2"`` when every tag is O, B-type or I-type; else ``"plain"`` (each run of one label is a span)."""
    return "iob2" if all(_IOB2.match(t) for row in tags for t in row) else "plain"


def as_iob2(rows, scheme):
    """Tag lists in IOB2, which entity-level scoring reads: plain labels become B-/I- runs."""
    if scheme == "iob2":
        return [list(r) for r in rows]
    out = []
    for row in rows:
        new, prev = [], None
        for t in row:
            new.append(OUTSIDE if t == OUTSIDE else (f"I-{t}" if t == prev else f"B-{t}"))
            prev = t
        out.append(new)
    return out


def span_type(tag):
    """The slot type a tag belongs to (``B-city`` and ``I-city``: ``city``); None for O."""
    if tag == OUTSIDE:
        return None
    return tag[2:] if _IOB2.match(tag) else tag


def align(tokenizer, words, max_length, tag_ids=None, intent_ids=None, warn=None):
    """Encode word lists into pieces; each word's tag on its first piece.

    Returns a dict of int64 arrays shaped ``(n_texts, width)``: ``input_ids``, ``attention_mask``,
    ``word_index`` (the word each first piece starts, -1 elsewhere), ``piece_word`` (the word of
    every piece, -1 for special tokens and padding), ``labels`` (tag ids at first
    pieces, :data:`IGNORE` elsewhere; only with ``tag_ids``), and ``intent`` (n_texts,) with
    ``intent_ids``; plus ``n_words`` and ``n_seen`` (words that fit in ``max_length``).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("the tagger needs a fast (Rust) tokenizer to map pieces to words; this backbone's "
                         f"tokenizer is {type(tokenizer).__name__}")
    enc = tokenizer([list(w) for w in words], is_split_into_words=True, truncation=True, max_length=max_length,
                    padding="longest", return_attention_mask=True)
    n, width = len(words), len(enc["input_ids"][0]) if words else 0
    word_index = np.full((n, width), -1, dtype=np.int64)
    piece_word = np.full((n, width), -1, dtype=np.int64)
    n_seen = np.zeros(n, dtype=np.int64)
    for r in range(n):
        prev = None
        for pos, w in enumerate(enc.word_ids(r)):
            if w is not None:
                piece_word[r, pos] = w
                if w != prev:
                    word_index[r, pos] = w
                    n_seen[r] = w + 1
            prev = w
    out = {"input_ids": np.asarray(enc["input_ids"], dtype=np.int64),
           "attention_mask": np.asarray(enc["attention_mask"], dtype=np.int64),
           "word_index": word_index, "piece_word": piece_word, "n_words": np.array([len(w) for w in words], dtype=np.int64), "n_seen": n_seen}
    if tag_ids is not None:
        labels = np.full((n, width), IGNORE, dtype=np.int64)
        rows, cols = np.nonzero(word_index >= 0)
        labels[rows, cols] = [tag_ids[r][word_index[r, c]] for r, c in zip(rows, cols)]
        out["labels"] = labels
    if intent_ids is not None:
        out["intent"] = np.asarray(intent_ids, dtype=np.int64)
    # Cut: the pieces fill max_length and words are left (a word the tokenizer drops entirely is no cut).
    cut = int(((n_seen < out["n_words"]) & (out["attention_mask"].sum(axis=1) >= max_length)).sum())
    if cut and warn:
        warnings.warn(f"{cut} of {n} {warn} are longer than max_length={max_length} tokens: their words past it "
                      f"{'are left out of training' if tag_ids is not None else 'are tagged ' + repr(OUTSIDE)}; "
                      "raise max_length to use them", UserWarning, stacklevel=4)
    return out


def targets(encodings):
    """Per text, one int row ``[intent or IGNORE, tag id per piece...]``: what the token loss reads."""
    labels = encodings["labels"]
    intent = encodings.get("intent")
    first = np.full((len(labels), 1), IGNORE, dtype=np.int64) if intent is None else intent[:, None]
    return np.concatenate([first, labels], axis=1)


def rows_of(encodings, rows):
    """The encodings of ``rows`` (every array indexed alike)."""
    return {k: v[rows] for k, v in encodings.items()}
