"""The release's tables: rows of the ``release`` config that carry the release's fingerprints.

README.md and the guide show only these blocks (tests/test_docs.py holds them to it). The release's
fingerprints are recorded in benchmarks/release_fingerprint.json (benchmarks.fingerprint); a row
made by other fit code, other defaults or another reference recipe is left out.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .rows import _ms

CONFIG = "release"
COMMAND = "`python -m benchmarks.run --config release`"
#: (method, label), in the order the tables show them
METHODS = [
    ("random", "sksparseft, default settings (bf16 on this CPU)"),
    ("default_f32", "sksparseft, default settings in float32 (a CPU without bf16)"),
    ("token_sparse", "`token_sparse` (the paper's mask), float32"),
    ("fisher", "`fisher` (plain Fisher mask), float32"),
    ("full", "full finetuning, float32"),
    ("full_bf16", "full finetuning, bf16"),
    ("frozen_lr_cv", "frozen-embedding LR, C by cross-validation"),
    ("tfidf_lr", "TF-IDF LR"),
    ("setfit", "SetFit"),
    ("fastfit", "FastFit"),
]
CELLS = [("banking77", "10shot"), ("clinc150", "10shot"), ("banking77", "full")]
CELL_NAMES = {("banking77", "10shot"): "10-shot BANKING77", ("clinc150", "10shot"): "10-shot CLINC150",
              ("banking77", "full"): "all of BANKING77"}
PEERS = ("setfit", "fastfit")
EMPTY = [f"No rows of this release yet: {COMMAND}."]


def release_rows(files):
    """The ``release`` rows whose fingerprint is the release's for their method.

    A fit run again counts once, as its latest row (the raw file keeps both).
    """
    from ..fingerprint import recorded, release_fingerprint

    release, latest = recorded(), {}
    for r in files.get(CONFIG, []):
        if r.get("fingerprint") and r["fingerprint"] == release_fingerprint(r["method"], release):
            latest[(r["method"], r["dataset"], r["regime"], r["seed"])] = r
    return list(latest.values())


def _by_cell(rows):
    out = defaultdict(list)
    for r in rows:
        out[(r["method"], r["dataset"], r["regime"])].append(r)
    for group in out.values():
        group.sort(key=lambda r: r["seed"])
    return out


def _seeds(group):
    seeds = [r["seed"] for r in group]
    return "" if seeds == [0, 1, 2] else f" (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"


def _accuracy(group):
    return _ms([r["accuracy"] for r in group]) + _seeds(group) if group else "not run"


def _seconds(group):
    return f"{np.mean([r['fit_s'] for r in group]):,.0f}" if group else ""


def _throughput(group):
    return f"{np.mean([r['n_test'] / r['predict_s'] for r in group]):,.0f}" if group else ""


def _caption(rows):
    from .rows import provenance

    ex = rows[0]
    sizes = {(r["dataset"], r["regime"]): (r["n_train"], r["n_test"]) for r in rows}
    cells = "; ".join(f"{CELL_NAMES[c]}: {sizes[c][0]:,} training texts, {sizes[c][1]:,} test texts"
                      for c in CELLS if c in sizes)
    bf16 = ", native bf16" if ex.get("cpu_native_bf16") else ""
    prints = sorted({r["fingerprint"] for r in rows if r["method"] not in ("frozen_lr_cv", "tfidf_lr", *PEERS)})
    return (f"{COMMAND}; written by {provenance(rows)}, fit fingerprint {', '.join(prints) or 'none'}; "
            f"{ex['device']}{bf16}, torch {ex['torch']}; the embedded all-MiniLM-L6-v2 for every method; "
            f"{cells}; each fit in a fresh process, one after the other. Accuracy on the test split: mean ± "
            f"sample std over seeds 0-2 unless a cell names its seeds; seconds: the fit's mean over those seeds.")


def release_table(files, plots=False):
    """README's table: accuracy in each regime, what a fit costs and how fast the model predicts."""
    rows = release_rows(files)
    if not rows:
        return EMPTY
    cells = _by_cell(rows)
    out = [f"| | {' | '.join(CELL_NAMES[c] for c in CELLS)} | fit s, 10-shot BANKING77 | fit s, all of BANKING77 "
           "| predict, texts/s |", "|---|" + "---|" * (len(CELLS) + 3)]
    for method, label in METHODS:
        groups = [cells.get((method, *c), []) for c in CELLS]
        if not any(groups):
            continue
        throughput = _throughput(groups[2] or groups[0])
        out.append(f"| {label} | {' | '.join(_accuracy(g) for g in groups)} | {_seconds(groups[0])} | "
                   f"{_seconds(groups[2])} | {throughput} |")
    ran = {label: [CELL_NAMES[c] for c in CELLS if cells.get((method, *c))] for method, label in METHODS
           if method in PEERS}
    partial = {label: where for label, where in ran.items() if where and len(where) < len(CELLS)}
    peers = "; ".join(f"{label} ran on {' and '.join(where)} only" for label, where in partial.items())
    return out + ["", _caption(rows) + (f" {peers}: a peer's fit takes many times the default's on this CPU "
                                          "(the fit seconds column)." if peers else "")
                  + " Predict: texts per second over BANKING77's test split, all of it in one call. No GPU ran "
                    "this release's rows."]


def release_results(files, plots=False):
    """The results page's table: every method in every regime, with macro-F1, memory and what trained."""
    rows = release_rows(files)
    if not rows:
        return EMPTY
    cells = _by_cell(rows)
    out = [_caption(rows), ""]
    for cell in CELLS:
        if not any(cells.get((m, *cell)) for m, _ in METHODS):
            continue
        out += [f"#### {CELL_NAMES[cell]}", "",
                "| method | seeds | accuracy | macro-F1 | fit s | peak memory, MiB | trained parameters | cross-entropy epochs run (planned) |",
                "|---|---|---|---|---|---|---|---|"]
        for method, label in METHODS:
            group = cells.get((method, *cell), [])
            if not group:
                continue
            plan = {r.get("finetune_plan", {}).get("epochs") for r in group} - {None}
            ran = ", ".join(str(r["epochs"]) for r in group if r.get("epochs") is not None)
            epochs = f"{ran} ({', '.join(str(e) for e in sorted(plan))})" if plan else ""
            out.append(f"| {label} | {', '.join(str(r['seed']) for r in group)} | {_ms([r['accuracy'] for r in group])} | "
                       f"{_ms([r['macro_f1'] for r in group])} | {_seconds(group)} | "
                       f"{np.mean([r['peak_rss_mib'] for r in group]):,.0f} | "
                       f"{int(np.median([r['trainable_params'] for r in group])):,} | {epochs} |")
        out.append("")
    return out


def release_costs(files, plots=False):
    """The speed guide's table: what a fit costs by data size, in each precision, beside the alternatives."""
    rows = release_rows(files)
    if not rows:
        return EMPTY
    cells = _by_cell(rows)
    shown = [(m, label) for m, label in METHODS if m != "tfidf_lr" and any(cells.get((m, *c)) for c in CELLS)]
    out = ["| training texts | " + " | ".join(label for _, label in shown) + " |", "|---|" + "---|" * len(shown)]
    for cell in CELLS:
        sizes = {r["n_train"] for m, _ in shown for r in cells.get((m, *cell), [])}
        if not sizes:
            continue
        out.append(f"| {CELL_NAMES[cell]} ({max(sizes):,}) | "
                   + " | ".join(_seconds(cells.get((m, *cell), [])) or "not run" for m, _ in shown) + " |")
    plans = {(r["dataset"], r["regime"]): r.get("finetune_plan") for r in rows if r["method"] == "random"}
    steps = "; ".join(f"{CELL_NAMES[c]}: {p['epochs']} cross-entropy epoch(s) of {p['steps_per_epoch']} steps "
                      f"({p['regime']}; early stopping may end it sooner)" for c, p in ((c, plans.get(c)) for c in CELLS)
                      if p)
    return out + ["", f"Fit seconds, mean over the seeds run (the accuracy table on the [results page](results.md#this-release) "
                      f"names them). The default's plan: {steps}. " + _caption(rows)]


def _paired(cells, a, b, cell):
    """Mean and sample std over seeds of the accuracy difference ``a - b`` (the seeds both ran)."""
    ra = {r["seed"]: r["accuracy"] for r in cells.get((a, *cell), [])}
    rb = {r["seed"]: r["accuracy"] for r in cells.get((b, *cell), [])}
    d = [ra[s] - rb[s] for s in sorted(set(ra) & set(rb))]
    if not d:
        return "not run"
    return f"{np.mean(d):+.4f}" + (f" ± {np.std(d, ddof=1):.4f}" if len(d) > 1 else "") + (
        "" if len(d) == 3 else f" (seed{'s' if len(d) > 1 else ''} {', '.join(str(s) for s in sorted(set(ra) & set(rb)))})")


def release_claims(files, plots=False):
    """The method page's table: the paper's mask against the same training on other masks, and the references."""
    rows = release_rows(files)
    if not rows:
        return EMPTY
    cells = _by_cell(rows)
    methods = [("token_sparse", "`token_sparse` (the paper's mask)"), ("fisher", "`fisher`"),
               ("random", "`random` (the default)"), ("full", "full finetuning, float32"),
               ("frozen_lr_cv", "frozen-embedding LR, C by cross-validation"), ("setfit", "SetFit")]
    out = ["| test accuracy | " + " | ".join(CELL_NAMES[c] for c in CELLS) + " |", "|---|" + "---|" * len(CELLS)]
    for m, label in methods:
        out.append(f"| {label} | " + " | ".join(_accuracy(cells.get((m, *c), [])) for c in CELLS) + " |")
    for a, b in (("token_sparse", "random"), ("token_sparse", "fisher")):
        out.append(f"| `{a}` − `{b}`, same seed | " + " | ".join(_paired(cells, a, b, c) for c in CELLS) + " |")
    counts = [(label, *_above_in(cells, "token_sparse", b)) for b, label in
              (("random", "`random`"), ("fisher", "`fisher`"), ("full", "full finetuning"))]
    said = ", ".join(f"above {label} in {k} of {n}" for label, k, n in counts if n)
    verdict = [f"On these rows `token_sparse`'s mean accuracy is {said} regimes.", ""] if said else []
    return out + [""] + verdict + [_caption(rows)]


def _above_in(cells, a, b):
    """In how many regimes ``a``'s mean accuracy is above ``b``'s, of those where both ran."""
    both = [c for c in CELLS if cells.get((a, *c)) and cells.get((b, *c))]
    return sum(np.mean([r["accuracy"] for r in cells[(a, *c)]]) > np.mean([r["accuracy"] for r in cells[(b, *c)]])
               + 1e-9 for c in both), len(both)
