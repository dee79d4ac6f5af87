"""The slots tables: the tagger on ATIS (``python -m benchmarks.slots``, rows in slots.jsonl).

``slots`` (the Slots page): test scores of every method, rows carrying the release's recorded
fingerprints only, beside the published JointBERT figures (``published.jsonl``). ``slots-screen``
(the research log): the development split, where the rule of "The tagger's default, and the token-driven part's fair test" decides.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .rows import _ms, provenance

CONFIG = "slots"
COMMAND = "`python -m benchmarks.slots`"
EMPTY = [f"No rows of this release yet: {COMMAND}."]
#: the rule's candidates, then the references
CANDIDATES = ("random", "token_sparse", "fisher", "full")
LABELS = {
    "random": "`random` mask",
    "token_sparse": "`token_sparse` (sensitivity through the slots' pieces)",
    "fisher": "`fisher` (plain Fisher mask)",
    "full": "`full` finetuning",
    "frozen_probe": "frozen token probe (logistic regression per token and per text)",
    "crf": "CRF on word features (sklearn-crfsuite), TF-IDF LR for the intent",
}
#: the rule's time limit (seconds of a mean fit) and its margin
LIMIT_S, MARGIN = 300.0, 0.003


def _label(method):
    from sksparseft import TokenSparseTagger

    label = LABELS[method]
    return f"{label}: the tagger's default" if method == TokenSparseTagger().strategy else label


def slot_rows(files, release=None):
    """The slots rows whose fingerprint is the release's for their method (a fit run again: its latest row)."""
    from ..fingerprint import recorded

    prints = (release or recorded()).get("slots", {})
    latest = {}
    for r in files.get(CONFIG, []):
        if r.get("fingerprint") and r["fingerprint"] == prints.get(r["method"]):
            latest[(r["method"], r["seed"])] = r
    by_method = defaultdict(list)
    for (method, _), r in sorted(latest.items(), key=lambda kv: kv[0][1]):
        by_method[method].append(r)
    return by_method


def _caption(rows, split):
    rows = [r for group in rows.values() for r in group]
    seeds = sorted({r["seed"] for r in rows})
    r0 = rows[0]
    return (f"{COMMAND}; written by {provenance(rows)}; {r0['device']}, torch {r0['torch']}"
            f"{', native bf16' if r0.get('cpu_native_bf16') else ''}; the embedded all-MiniLM-L6-v2 (22.7M parameters); "
            f"ATIS, {r0['n_train']:,} training utterances, scored on the {r0[f'{split}_n']:,} of the {split} split; "
            f"seeds {', '.join(map(str, seeds))}: mean ± sample std (one value: one seed); each fit in a fresh process, "
            "one after the other.")


def slots_table(files, plots=False):
    """Test scores of every method, and the published JointBERT figures."""
    rows = slot_rows(files)
    if not rows:
        return EMPTY
    out = ["| | slot F1 | intent accuracy | frame accuracy | fit s | precision |", "|---|---|---|---|---|---|"]
    for method in (*CANDIDATES, "frozen_probe", "crf"):
        group = rows.get(method)
        if not group:
            continue
        out.append(f"| {_label(method)} | {_ms([r['test_slot_f1'] for r in group])} | "
                   f"{_ms([r['test_intent_acc'] for r in group])} | {_ms([r['test_frame_acc'] for r in group])} | "
                   f"{np.mean([r['fit_s'] for r in group]):.0f} | {group[0].get('precision', '—')} |")
    for p in files.get("published", []):
        if p.get("dataset") == "atis":
            out.append(f"| {p['label']} (published; {p['parameters']}) | {p['slot_f1']:.3f} | {p['intent_acc']:.3f} | "
                       " | | |")
    sources = [p["source"] for p in files.get("published", []) if p.get("dataset") == "atis"]
    return out + ["", _caption(rows, "test") + (f" Published figures: {'; '.join(sources)}; not run here." if sources else "")]


def _dev_scores(rows, method):
    return {r["seed"]: (r["dev_slot_f1"] + r["dev_intent_acc"]) / 2 for r in rows.get(method, [])}


def verdict(rows):
    """``(the default, [lines])`` by the rule of "The tagger's default, and the token-driven part's fair test" (docs/research.md)."""
    complete = {m: _dev_scores(rows, m) for m in CANDIDATES if set(_dev_scores(rows, m)) >= {0, 1, 2}}
    if not complete:
        return None, ["No candidate has all of seeds 0-2 yet: the rule decides nothing."]
    seconds = {m: float(np.mean([r["fit_s"] for r in rows[m]])) for m in complete}
    score = {m: float(np.mean([complete[m][s] for s in (0, 1, 2)])) for m in complete}
    eligible = [m for m in complete if seconds[m] <= LIMIT_S]
    pool = eligible or list(complete)
    best = max(score[m] for m in pool)
    near = [m for m in pool if score[m] >= best - MARGIN]
    choice = min(near, key=lambda m: seconds[m]) if eligible else min(pool, key=lambda m: seconds[m])
    lines = [f"By the rule, the default is `{choice}`: " + (
        f"of the candidates whose mean fit took at most {LIMIT_S:.0f} s, the fastest within {MARGIN} of the best dev "
        f"score ({best:.4f})." if eligible else f"no candidate's mean fit took at most {LIMIT_S:.0f} s; the fastest.")]
    missing = [m for m in CANDIDATES if m not in complete]
    if missing:
        lines.append(f"Not decided on (seeds missing): {', '.join(f'`{m}`' for m in missing)}.")
    paired = [r for m in complete for r in rows[m] if "dev_argmax_slot_f1" in r]
    if paired:
        diffs = [(r["dev_slot_f1"] - r["dev_argmax_slot_f1"]) for r in paired]
        keep = float(np.mean(diffs)) >= 0.0
        lines.append(f"Constrained decoding minus argmax, dev slot F1 over the candidates' {len(diffs)} fits: "
                     f"{np.mean(diffs):+.4f} ± {np.std(diffs, ddof=1) if len(diffs) > 1 else 0.0:.4f}; by the rule "
                     f"the default decoding is {'constrained' if keep else 'argmax'}.")
    if {"token_sparse", "random", "fisher"} <= set(complete):
        holds = True
        for other in ("random", "fisher"):
            diffs = [complete["token_sparse"][s] - complete[other][s] for s in (0, 1, 2)]
            mean, sd = float(np.mean(diffs)), float(np.std(diffs, ddof=1))
            holds &= mean > sd
            lines.append(f"`token_sparse` minus `{other}`, paired by seed: {mean:+.4f} ± {sd:.4f}.")
        lines.append("The token-driven claim " + ("holds: " if holds else "does not hold: ") +
                     "`token_sparse` is " + ("" if holds else "not ") +
                     "above both by more than the spread of the paired differences.")
    return choice, lines


def slots_screen(files, plots=False):
    """The development split: the rule's candidates and the references, and what the rule decides."""
    rows = slot_rows(files)
    if not rows:
        return EMPTY
    out = ["| | dev score | dev slot F1 | dev intent accuracy | fit s |", "|---|---|---|---|---|"]
    for method in (*CANDIDATES, "frozen_probe", "crf"):
        group = rows.get(method)
        if group:
            out.append(f"| {LABELS[method]} | {_ms([(r['dev_slot_f1'] + r['dev_intent_acc']) / 2 for r in group])} | "
                       f"{_ms([r['dev_slot_f1'] for r in group])} | {_ms([r['dev_intent_acc'] for r in group])} | "
                       f"{np.mean([r['fit_s'] for r in group]):.0f} |")
    _, lines = verdict(rows)
    return out + [""] + lines + ["", _caption(rows, "dev") + " Dev score: (slot F1 + intent accuracy) / 2."]
