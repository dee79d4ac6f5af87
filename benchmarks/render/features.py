"""The estimator's features measured: unknown-intent rejection, multi-label, serving throughput."""

from __future__ import annotations

from .rows import _ms, provenance


FEATURE_NAMES = {"default": "TokenSparseClassifier()", "default_auto": "TokenSparseClassifier(multilabel_threshold=\"auto\")",
                 "frozen_lr": "frozen-embedding LR, same rule", "frozen_ovr_lr": "frozen-embedding one-vs-rest LR"}


def _feature_table(rows, config, fields, intro, names=None):
    """One table per regime of a ``features`` config: mean ± std over seeds of each field, per variant."""
    lines = []
    for regime in sorted({r["regime"] for r in rows}):
        mine = [r for r in rows if r["regime"] == regime and not r.get("error")]
        last = {}
        for r in mine:  # a rerun of a seed supersedes; the raw file keeps both
            last[(r["variant"], r["seed"])] = r
        mine = list(last.values())
        ex = mine[0]
        lines += [f"#### {regime}: {ex['n_train']:,} training texts", "",
                  f"`python -m benchmarks.run --config {config}`; written by {provenance(mine)}; {ex['device']}, "
                  f"torch {ex['torch']}; {intro}", "",
                  "| method | seeds | " + " | ".join(name for name, _ in fields) + " | fit s |",
                  "|---" * (len(fields) + 3) + "|"]
        names = {**FEATURE_NAMES, **(names or {})}
        for variant in [v for v in names if any(r["variant"] == v for r in mine)]:
            g = sorted((r for r in mine if r["variant"] == variant), key=lambda r: r["seed"])
            cells = [names[variant], ", ".join(str(r["seed"]) for r in g)]
            cells += [_ms([r[f] for r in g]) for _, f in fields]
            cells.append(_ms([r["fit_s"] for r in g], "{:.0f}"))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _oos(files, plots):
    lines = []
    fields = [("in-scope accuracy", "inscope_accuracy"), ("out-of-scope recall", "oos_recall"),
              ("in-scope rejected", "inscope_rejected"), ("threshold", "threshold")]
    dev = [("dev in-scope rejected", "dev_inscope_rejected"), ("dev out-of-scope recall", "dev_oos_recall")]
    names = {"default": 'TokenSparseClassifier(unknown_label="oos")',
             "rejection_only": "the rejection stage alone (max_epochs=0, contrastive_epochs=0): the default's threshold"}
    for config in ("oos", "oos_full"):
        rows = files.get(config, [])
        current = [r for r in rows if r.get("rule") == "out_of_fold_conformal"]
        earlier = [r for r in rows if "rule" not in r]
        if current:
            lines += _feature_table(current, config, fields + dev,
                                    "CLINC150 test: 4,500 in-scope and 1,000 out-of-scope queries; dev: CLINC150's "
                                    "validation split (3,000 in-scope, 100 out-of-scope), never trained on. Rejection "
                                    "by the pretrained backbone's probe, threshold out of fold on every in-scope "
                                    "training text (conformal, target 95% accepted = 5% rejected).", names=names)
        if earlier:
            lines += _feature_table(earlier, config, fields,
                                    "CLINC150 test. The rule before 0.6.0: the threshold on the model's own "
                                    "best-class probability, keeping 95% of the in-scope validation split accepted.",
                                    names=names)
    return lines or ["No rows yet: `python -m benchmarks.run --config oos`."]


def _multilabel(files, plots):
    rows = files.get("multilabel", [])
    if not rows:
        return ["No rows yet: `python -m benchmarks.run --config multilabel`."]
    ex = rows[0]
    return _feature_table(rows, "multilabel", [("micro-F1", "micro_f1"), ("macro-F1", "macro_f1"),
                                               ("exact match", "subset_accuracy"),
                                               ("exact match, two-request messages", "subset_accuracy_pairs")],
                          f"{ex['n_labels']} labels; test: {ex['n_test']:,} messages, {ex['n_test_pairs']:,} of them "
                          "two requests.")


def _serving(files, plots):
    rows = [r for r in files.get("serving", []) if not r.get("error")]
    if not rows:
        return ["No rows yet: `python -m benchmarks.run --config serving`."]
    last = {}
    for r in rows:  # a rerun of a setting supersedes; the raw file keeps both
        last[(r["torch_threads"], r["texts_per_call"], r["clients"])] = r
    rows = sorted(last.values(), key=lambda r: (str(r["torch_threads"]) != "all", r["texts_per_call"], r["clients"]))
    ex = rows[0]
    lines = [f"`python -m benchmarks.run --config serving`; written by {provenance(rows)}; {ex['device']}, torch "
             f"{ex['torch']}; {ex['model']} fitted on {ex['n_train']:,} BANKING77 texts, saved and loaded; each "
             f"setting runs {ex['seconds']} s in a fresh process, every client thread calling `predict` on "
             "BANKING77 test texts.", "",
             "| torch threads | texts per call | client threads | texts / s | p50 ms per call | p99 ms per call |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        threads = f"all ({r['threads']})" if r["torch_threads"] == "all" else str(r["torch_threads"])
        lines.append(f"| {threads} | {r['texts_per_call']} | {r['clients']} | {r['texts_per_s']:.0f} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    return lines
