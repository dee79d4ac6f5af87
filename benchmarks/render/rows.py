"""The raw rows, and what every table shares: reading the results files, provenance lines, mean ± std,
a dev screen's groups."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import numpy as np

from ..common import RESULTS, ROOT


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


try:  # the package's own reference tables (rendered by it, not from rows)
    from sksparseft._docs import REFERENCE_BLOCKS, render_reference_tables
except ImportError:  # a package without them
    REFERENCE_BLOCKS, render_reference_tables = (), None


IMG = ROOT / "docs" / "img"


BLOCK = re.compile(r"(<!-- rendered:([a-z0-9_-]+) -->\n)(.*?)(<!-- /rendered:\2 -->)", re.S)


REFERENCE_NAMES = {"frozen_lr": "frozen-embedding LR", "frozen_lr_cv": "frozen-embedding LR, C by cross-validation",
                   "tfidf_lr": "TF-IDF LR", "setfit": "SetFit"}


def rows_by_file():
    """``{results file stem: [rows]}`` of every results file."""
    return {p.stem: [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
            for p in sorted(RESULTS.glob("*.jsonl"))}


def _compare_rows(files):
    return [r for rows in files.values() for r in rows if _is_compare(r)]


def _is_compare(row):
    # dev_screen rows name a method too, but score on a dev split (dev_accuracy), not on test.
    return "config" in row and "method" in row and "accuracy" in row


def at_current_defaults(rows):
    """Whether every fit of these rows ran the current fit: the contrastive stage first, the head refit last."""
    from sksparseft import TokenSparseClassifier

    stages = TokenSparseClassifier().contrastive_epochs
    fits = [r for r in rows if r.get("method") not in REFERENCE_NAMES]
    return bool(fits) and all(r.get("refit_head") and r.get("contrastive_epochs", 0) == stages for r in fits)


def provenance(rows):
    """Which code wrote these rows: the version and date each row carries (rows of 0.1.0 carry none)."""
    dated = sorted({f"sksparseft {r['version']} ({r['date']})" for r in rows if "version" in r})
    undated = [r for r in rows if "version" not in r]
    if undated:
        fits = [r for r in undated if r.get("method") not in REFERENCE_NAMES]
        dated.insert(0, "sksparseft 0.1.0 (2026-11-26)" if fits and all(r.get("refit_head") for r in fits) else
                     "a development build of 0.1.0 (2026-11-26) from before the head refit became the default")
    return " and ".join(dated)


def _run_key(row):
    return row.get("version"), row.get("date")


def newest_runs(rows):
    """The last row of each (method, dataset, regime, seed): a rerun supersedes, the raw file keeps both."""
    last = {}
    for r in rows:  # rows are in the order they were written
        last[(_label(r), r["dataset"], r["regime"], r["seed"])] = r
    return list(last.values())


def _ms(values, fmt="{:.4f}"):
    values = [v for v in values if v is not None]
    if not values:
        return ""
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(np.mean(values))} ± {fmt.format(np.std(values, ddof=1))}"


def _label(row):
    extra = {k: v for k, v in (row.get("params") or {}).items() if k != "max_epochs"}
    name = REFERENCE_NAMES.get(row["method"], row["method"])
    return name + (" " + " ".join(f"{k}={v}" for k, v in extra.items()) if extra else "")


def _at_least(a, b):
    """``a >= b`` for mean accuracies: means over the same texts that are equal differ only by float noise."""
    return a >= b - 1e-9


def _above(a, b):
    """``a > b`` for mean accuracies (see :func:`_at_least`)."""
    return a > b + 1e-9


def _dev_groups(files, config):
    """``{(dataset, variant): [rows with a dev accuracy]}`` of a dev-screen config's results file.

    A fit run again (same dataset, variant and seed) counts once, as its latest row: the earlier
    rows stay in the file, and the page says why the fit was run again.
    """
    latest = {}
    for r in files.get(config, []):
        if r.get("dev_accuracy") is not None:
            latest[(r["dataset"], r["variant"], r["seed"])] = r
    groups = defaultdict(list)
    for (dataset, variant, _), r in latest.items():
        groups[(dataset, variant)].append(r)
    return groups


def _screen_heading(config, dataset, rows, seconds):
    """The heading and provenance lines of one dataset's table of a dev-screen config."""
    ex = rows[0]
    regime = "10-shot" if ex.get("regime", "10shot") == "10shot" else "all the training data but the dev part"
    return [f"#### {dataset}, {regime}: {ex['n_fit']:,} fit texts, {ex['n_dev']:,} dev texts", "",
            f"`python -m benchmarks.run --config {config}`; written by {provenance(rows)}; {ex['device']}, "
            f"torch {ex['torch']}. {seconds}", ""]


def _gap(pair):
    """A mean difference and its seed std, as the rule's tables show them."""
    return "" if pair[0] is None else f"{pair[0]:+.4f} ({pair[1]:.4f})"
