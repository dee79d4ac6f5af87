"""Whether the token groups earn their place: as features beside the embedding, and as structure in a budget."""

from __future__ import annotations

import numpy as np

from .rows import _dev_groups, _gap, _ms, _screen_heading, provenance
from .screens import SPEED_REFERENCES


#: The group_features rule's pairs: (the embedding beside the token groups, its label-blind control).
GROUP_FEATURE_PAIRS = (("frozen_groups_lr", "frozen_freq_lr"), ("frozen_groups_x10_lr", "frozen_freq_x10_lr"))


def _group_features(files, plots):
    """The token groups as features: each variant per dataset, then the rule's tests."""
    groups = _dev_groups(files, "group_features")
    if not groups:
        return ["No rows yet: `python -m benchmarks.run --config group_features`.", ""]
    datasets = sorted({d for d, _ in groups})
    stats = {k: (np.mean([r["dev_accuracy"] for r in g]), np.std([r["dev_accuracy"] for r in g], ddof=1)
                 if len(g) > 1 else np.nan, len(g)) for k, g in groups.items()}
    lines = []
    for dataset in datasets:
        rows = sum((g for (d, _), g in groups.items() if d == dataset), [])
        ex = rows[0]
        lines += [f"#### {dataset}: {ex['split']}, {ex['n_dev']:,} dev texts", "",
                  f"`python -m benchmarks.run --config group_features`; written by {provenance(rows)}; {ex['device']}, "
                  f"torch {ex['torch']}; logistic regression (C=1; TF-IDF alone C=10), no finetuning.", "",
                  "| variant | seeds | dev accuracy | vs frozen LR | n-grams |", "|---|---|---|---|---|"]
        base = stats.get((dataset, "frozen_lr"), (None,))[0]
        for (d, v) in sorted((k for k in groups if k[0] == dataset), key=lambda k: -stats[k][0]):
            g = groups[(d, v)]
            lines.append("| " + " | ".join([
                v, ", ".join(str(r["seed"]) for r in g), _ms([r["dev_accuracy"] for r in g]),
                f"{stats[(d, v)][0] - base:+.4f}" if base is not None else "",
                _ms([r["n_groups"] for r in g if r.get("n_groups") is not None], "{:.0f}")]) + " |")
        lines.append("")
    lines += ["The rule's tests per pair (mean differences; the larger seed std of each pair in brackets):", "",
              "| groups | drug reviews: vs frozen LR | drug reviews: vs label-blind control | intent sets: vs frozen LR | "
              "verdict |", "|---|---|---|---|---|"]
    for variant, control in GROUP_FEATURE_PAIRS:
        def diff(dataset, other):
            a, b = stats.get((dataset, variant)), stats.get((dataset, other))
            if a is None or b is None:
                return None, None
            return a[0] - b[0], max(a[1], b[1])
        drug = [diff("drugreviews", "frozen_lr"), diff("drugreviews", control)]
        intents = [(d, diff(d, "frozen_lr")) for d in datasets if d != "drugreviews"]
        complete = all(stats.get(k, (0, 0, 0))[2] == 3 for k in [("drugreviews", variant), ("drugreviews", control)]
                       + [(d, v) for d, _ in intents for v in (variant, "frozen_lr")]) and len(intents) == 2
        ok = (complete and all(g is not None and g > s for g, s in drug)
              and all(g is not None and g >= -0.003 for _, (g, _) in intents))
        lines.append(f"| `{variant}` | {_gap(drug[0])} | {_gap(drug[1])} | "
                     + ", ".join(f"{d} {g:+.4f}" for d, (g, _) in intents if g is not None)
                     + f" | {'earns a place' if ok else ('does not' if complete else 'not decided: seeds missing')} |")
    return lines + [""]


#: The token_structure screen's pairs: the token-driven variant and its random control of the same size.
TOKEN_PAIRS = {"rows": ("token_rows_top3", "random_rows_top3"), "entries": ("token_top3", "random_top3")}


def _token_structure(files, plots):
    """The token groups' choice in a structured budget against random structure, with the rule's verdicts."""
    groups = _dev_groups(files, "token_structure")
    if not groups:
        return ["No rows yet: `python -m benchmarks.run --config token_structure`.", ""]
    lines, stats = [], {}
    for dataset in sorted({d for d, _ in groups}):
        rows = sum((g for (d, _), g in groups.items() if d == dataset), [])
        lines += _screen_heading("token_structure", dataset, rows,
                                 "Fit seconds: median over the seeds, other work on the CPU at times (indicative only).")
        lines += ["| variant | seeds | dev accuracy | vs default | vs full | vs frozen LR | fit s |", "|---|---|---|---|---|---|---|"]
        means = {v: np.mean([r["dev_accuracy"] for r in g]) for (d, v), g in groups.items() if d == dataset}
        for (d, v), g in groups.items():
            if d == dataset:
                stats[(d, v)] = (means[v], np.std([r["dev_accuracy"] for r in g], ddof=1) if len(g) > 1 else np.nan,
                                 len(g))
        for variant in sorted(means, key=lambda v: -means[v]):
            g = groups[(dataset, variant)]
            lines.append("| " + " | ".join([
                variant, ", ".join(str(r["seed"]) for r in g), _ms([r["dev_accuracy"] for r in g]),
                *(f"{means[variant] - means[ref]:+.4f}" if ref in means else "" for ref in SPEED_REFERENCES.values()),
                f"{np.median([r['fit_s'] for r in g]):.0f}"]) + " |")
        lines.append("")
    lines += ["The rule's verdict per pair (the token-driven mean minus the random one, and the larger seed std):", ""]
    datasets = sorted({d for d, _ in groups})
    for pair, (token, rand) in TOKEN_PAIRS.items():
        parts, wins = [], []
        for d in datasets:
            if (d, token) not in stats or (d, rand) not in stats:
                parts.append(f"{d}: not run")
                wins.append(None)
                continue
            (mt, st, nt), (mr, sr, nr) = stats[(d, token)], stats[(d, rand)]
            spread = max(st, sr)
            parts.append(f"{d} {mt - mr:+.4f} (spread {spread:.4f})")
            wins.append(None if min(nt, nr) < 3 else (mt - mr) > spread)
        verdict = ("not decided (a variant lacks seeds)" if None in wins else
                   "the token-driven choice wins" if all(wins) else "no win: random structure of the same size is as good")
        lines.append(f"- {pair}: " + "; ".join(parts) + f". {verdict}.")
    lines.append("")
    return lines
