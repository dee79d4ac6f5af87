"""The lab's runner and renderer: every results file has the config that writes it, and a rendered table follows
its rows (that the docs hold what their rows give is the product's test: tests/test_docs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

render = pytest.importorskip("benchmarks.render",
                             reason="run from the repository root (python -m pytest benchmarks/tests)")
run = pytest.importorskip("benchmarks.run")


def test_every_results_file_has_the_config_that_writes_it():
    files = sorted(render.RESULTS.glob("*.jsonl"))
    assert files
    assert [f.name for f in files if run.config_of(f) is None] == []


def test_a_tag_names_the_machine_not_another_config():
    assert run.config_of(Path("full_10shot_h200.jsonl")) == "full_10shot"
    assert run.config_of(Path("cost_cpu_full.jsonl")) == "cost_cpu_full"
    assert run.config_of(Path("unknown.jsonl")) is None


def test_rendering_follows_the_rows():
    rows = render.rows_by_file()
    text = "<!-- rendered:summary -->\nstale\n<!-- /rendered:summary -->\n"
    fresh = render.rendered(text, rows)
    config = render.summary_config(rows)
    assert "stale" not in fresh and f"(`{config}`)" in fresh
    rows[config] = [dict(r, accuracy=0.5) for r in rows[config]]
    assert "0.5000" in render.rendered(text, rows)


def test_a_rerun_supersedes_the_older_row_of_the_same_seed():
    old = {"method": "full", "dataset": "d", "regime": "10shot", "seed": 0, "accuracy": 0.5}
    rows = [old, dict(old, seed=1), dict(old, accuracy=0.7, version="0.2.0", date="2026-11-29")]
    kept = render.newest_runs(rows)
    assert sorted((r["seed"], r["accuracy"]) for r in kept) == [(0, 0.7), (1, 0.5)]


def _budget_refs(**kw):
    ref = {"default": 0.86, "frozen": 0.85, "frozen_cv": 0.84, "full": 0.862}
    return {**ref, **kw}


def test_the_budget_rule_at_10_shots_fails_each_clause_on_its_own():
    from benchmarks.render.budget import budget_tests

    def failed(mean, **ref):
        return [name for name, ok in budget_tests("banking77", False, mean, _budget_refs(**ref)) if not ok]

    assert failed(0.8600) == []
    assert failed(0.8560) == ["within 0.3 of 0.7.10's default", "within 0.3 of full (or no further below it than "
                                                                 "0.7.10's default)"]
    assert failed(0.8600, frozen=0.8600) == ["above frozen LR (C=1)"]
    assert failed(0.8600, frozen_cv=0.8601) == ["above frozen LR (C by cross-validation)"]
    # 0.7.10's default 0.5 below full: the candidate may be as far below, not further.
    assert failed(0.8600, full=0.865) == []
    assert failed(0.8590, full=0.865) == ["within 0.3 of full (or no further below it than 0.7.10's default)"]


def test_the_budget_rule_with_all_the_data_has_its_fixed_bars_and_seconds():
    from benchmarks.render.budget import budget_tests

    def failed(dataset, mean, seconds=150.0, **ref):
        return [name for name, ok in budget_tests(dataset, True, mean, _budget_refs(**ref), seconds) if not ok]

    assert failed("drugreviews", 0.709, frozen_cv=0.70) == []
    assert failed("drugreviews", 0.7089, frozen_cv=0.70) == ["at least 0.709"]
    assert failed("clinc150", 0.975, frozen_cv=0.975) == ["above frozen LR (C by cross-validation)"]
    assert failed("banking77", 0.93, frozen_cv=0.93) == []
    assert failed("banking77", 0.9237, frozen_cv=0.92) == ["at least 0.7.8's default less 0.3 (0.9238)"]
    assert failed("banking77", 0.93, seconds=181.0, frozen_cv=0.92) == ["median fit seconds at most 180"]
