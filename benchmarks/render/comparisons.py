"""Methods compared on the test splits (tables and plots), and the README's summary of the newest comparison."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np

from .cost import _by_method, _job_name, _variant
from .rows import IMG, REFERENCE_NAMES, _is_compare, _label, _ms, _run_key, at_current_defaults, newest_runs, provenance


def _compare_table(rows):
    groups = defaultdict(list)
    for r in rows:
        groups[_label(r)].append(r)
    # Fit times compare only within one run of the code (same version and date: same machine and load).
    full_fits = defaultdict(list)
    for r in groups.get("full", []):
        full_fits[_run_key(r)].append(r["fit_s"])
    has_oos = any("oos_recall" in r for r in rows)
    mixed = len({_run_key(r) for r in rows}) > 1  # rows of several runs: say which wrote each
    head = "| method | seeds | accuracy | macro-F1 |" + (" OOS recall |" if has_oos else "") + \
        " fit s | fit / full | peak RSS MiB | trainable params |" + (" written |" if mixed else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for key in sorted(groups, key=lambda k: -np.mean([r["accuracy"] for r in groups[k]])):
        g = groups[key]
        fit = np.mean([r["fit_s"] for r in g])
        same_run = full_fits.get(_run_key(g[0])) if len({_run_key(r) for r in g}) == 1 else None
        ratio = f"{fit / np.mean(same_run):.2f}" if same_run and g[0]["method"] not in REFERENCE_NAMES else ""
        cells = [key, str(len(g)), _ms([r["accuracy"] for r in g]), _ms([r["macro_f1"] for r in g])]
        if has_oos:
            cells.append(_ms([r.get("oos_recall") for r in g], "{:.3f}"))
        cells += [f"{fit:.0f}", ratio, f"{np.mean([r['peak_rss_mib'] for r in g]):.0f}",
                  f"{int(np.mean([r['trainable_params'] for r in g])):,}"]
        if mixed:
            cells.append(", ".join(sorted({f"{r.get('version', '0.1.0')}, {r.get('date', '2026-11-26')}" for r in g})))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _plot(rows, tag):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = defaultdict(list)
    for r in rows:
        groups[_label(r)].append(r)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, g in sorted(groups.items()):
        acc = [r["accuracy"] for r in g]
        a1.errorbar(np.mean([r["trainable_params"] for r in g]), np.mean(acc), yerr=np.std(acc), fmt="o", capsize=3, label=key)
    a1.set_xscale("log")
    a1.set_xlabel("trainable parameters (log)")
    a1.set_ylabel("test accuracy (mean ± std over seeds)")
    a1.legend(fontsize=7)
    names = sorted(groups, key=lambda k: np.mean([r["accuracy"] for r in groups[k]]))
    for i, key in enumerate(names):
        acc = [r["accuracy"] for r in groups[key]]
        a2.scatter([i] * len(acc), acc, s=18)
    a2.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    a2.set_ylabel("test accuracy, one dot per seed")
    fig.suptitle(tag)
    fig.tight_layout()
    IMG.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG / f"{tag.replace(' ', '_')}.png", dpi=110, metadata={"Software": None})
    plt.close(fig)


def _comparisons(files, current, plots):
    by_table = defaultdict(list)
    for stem, rows in files.items():
        for r in rows:
            if _is_compare(r):
                by_table[(stem, r["dataset"], r["regime"])].append(r)
    out = []
    for (stem, dataset, regime), rows in sorted(by_table.items()):
        if at_current_defaults(rows) != current:
            continue
        rows = newest_runs(rows)
        ex = rows[0]
        devices = ", ".join(sorted({r["device"] for r in rows}))
        tag = f"{stem} {dataset} {regime}"
        out += [f"#### {dataset}, {regime} (`{stem}.jsonl`)", "",
                f"`python -m benchmarks.run --config {ex['config']}`{_tag_of(stem, ex['config'])}; written by "
                f"{provenance(rows)}; {ex['n_train']:,} training texts, {ex['n_test']:,} test texts; {devices}; "
                f"torch {ex['torch']}; settings {json.dumps(ex.get('params') or {})}; seeds "
                f"{sorted({r['seed'] for r in rows})}.", "", *_compare_table(rows), "",
                f"![{tag}](img/{tag.replace(' ', '_')}.png)", ""]
        if plots:
            _plot(rows, tag)
    return out


def _tag_of(stem, config):
    return f" `--tag {stem[len(config) + 1:]}`" if stem != config else ""


#: The comparison the README summarises: the newest one at the current defaults.
SUMMARY_CONFIGS = ("default_10shot", "cpu_10shot")


def summary_config(files):
    """The results file the README's 10-shot summary comes from."""
    return next((c for c in SUMMARY_CONFIGS if files.get(c)), SUMMARY_CONFIGS[-1])


def _summary(files, plots):
    config = summary_config(files)
    rows = newest_runs(files.get(config, []))
    order = ["token_sparse", "fisher", "random", "full", "layers", "lora", "prefix", "bitfit", "frozen_lr", "setfit",
             "tfidf_lr"]
    methods = [m for m in order if any(r["method"] == m for r in rows)]
    lines = ["| 10-shot, test accuracy | " + " | ".join(REFERENCE_NAMES.get(m, m) for m in methods) + " |",
             "|---" * (len(methods) + 1) + "|"]
    for dataset in ("banking77", "clinc150"):
        cells = [f"{dataset} (`{config}`)"]
        for m in methods:
            acc = [r["accuracy"] for r in rows if r["dataset"] == dataset and r["method"] == m]
            seeds = sorted(r["seed"] for r in rows if r["dataset"] == dataset and r["method"] == m)
            cells.append(_ms(acc) + (f" (seed {', '.join(map(str, seeds))})" if 0 < len(acc) < 3 else ""))
        lines.append("| " + " | ".join(cells) + " |")
    full = [r for r in files.get("interpolation", []) if r["dataset"] == "banking77" and r["regime"] == "full"
            and r.get("strategy", "token_sparse") == "token_sparse" and r.get("refit_head")]
    if full:
        lines += ["", "| full BANKING77, test accuracy (`interpolation`, seeds 0-2) | linear probe on frozen features "
                  "(a=0) | finetune as trained (a=1) | fitted default model |", "|---|---|---|---|",
                  f"| token_sparse, the defaults of 0.1.0-0.2.0 (no contrastive stage) | {_ms([r['test_acc']['probe'] for r in full])} | "
                  f"{_ms([r['test_acc']['finetune'] for r in full])} | {_ms([r['test_acc']['final'] for r in full])} |"]
    job = [r for r in files.get("main_job", []) if "accuracy" in r and r["dataset"] == "banking77"]
    if job:
        order = ["random", "fisher", "full", "frozen_lr", "tfidf_lr"]
        of = _by_method(job)
        methods = [_job_name(m) for m in order if _job_name(m) in of]
        lines += ["", f"| all {job[0]['n_train']:,} BANKING77 training texts (`main_job`) | "
                  + " | ".join(f"{m}, {', '.join(sorted({r.get('version', '') for r in of[m]}))}, seed "
                               f"{', '.join(str(r['seed']) for r in of[m])}" for m in methods)
                  + " |", "|---" * (len(methods) + 1) + "|",
                  "| test accuracy | " + " | ".join(_ms([r["accuracy"] for r in of[m]]) for m in methods) + " |",
                  "| fit seconds (mean) | " + " | ".join(f"{np.mean([r['fit_s'] for r in of[m]]):.0f}" for m in methods)
                  + " |"]
    cost = [r for r in files.get("cost_cpu", []) if r.get("part") == "ratio"]
    if cost:
        stamp = max(r["run"] for r in cost)
        run = {_variant(r): r for r in cost if r["run"] == stamp}
        if "full" in run:
            names = [v for v in run if v != "full"]
            lines += ["", f"| fit time / `full` (`cost_cpu`, run {stamp}, 3,000 BANKING77 texts, 2 epochs) | "
                      + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|",
                      "| whole fit | " + " | ".join(f"{run[v]['fit_s'] / run['full']['fit_s']:.2f}x" for v in names) + " |"]
    return lines
