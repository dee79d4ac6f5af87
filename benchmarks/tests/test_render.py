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
