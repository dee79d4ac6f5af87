"""The docs hold what the raw rows say, their links and paths hold, and the product speaks of itself.

How the lab's runner and renderer pick and name rows is tested with the lab (benchmarks/tests/test_render.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
render = pytest.importorskip("benchmarks.render", reason="run from the repository root (python -m pytest)")


@pytest.mark.parametrize("doc", render.DOCS, ids=lambda p: p.name)
def test_every_rendered_block_is_what_its_rows_give(doc):
    text = doc.read_text()
    assert text == render.rendered(text, render.rows_by_file()), (
        f"{doc.name}: a rendered block differs from its raw rows; run python -m benchmarks.run --render-only")


def test_the_docs_have_rendered_blocks_and_none_is_unknown():
    names = [m.group(2) for doc in render.DOCS for m in render.BLOCK.finditer(doc.read_text())]
    # The package's reference tables (parameters, strategies) are rendered by sksparseft._docs.
    assert set(names) - set(render.REFERENCE_BLOCKS) == set(render.BLOCKS)


def test_no_file_speaks_of_how_the_work_was_organised():
    word = re.compile(r"\b" + "ses" + r"sions?\b", re.I)
    places = [ROOT / "README.md", ROOT / "CHANGELOG.md"] + [
        p for folder in ("docs", "sksparseft", "benchmarks", "examples", "tests")
        for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".sh", ".toml", ".yml", ".txt")
    ]
    assert [str(p.relative_to(ROOT)) for p in places if word.search(p.read_text())] == []


# -- links, paths and the benchmarks page's order ------------------------------------------------
DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _slug(heading):
    """The anchor mkdocs (Python-Markdown's toc) gives a heading."""
    text = re.sub(r"[^\w\s-]", "", heading).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page):
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+?)\s*$", page.read_text(), re.M)}


def test_every_link_to_a_section_of_a_page_finds_its_heading():
    broken = []
    for page in DOC_PAGES:
        for m in re.finditer(r"\]\(([\w/.-]*?\.md)?#([\w-]+)\)", page.read_text()):
            target = (page.parent / m.group(1)).resolve() if m.group(1) else page
            if not target.is_file() or m.group(2) not in _anchors(target):
                broken.append(f"{page.relative_to(ROOT)}: {m.group(0)}")
    assert broken == []


def test_every_repository_path_the_docs_name_exists():
    # A file or folder moved (benchmarks/research/, the package's folders) must not leave its old path in the docs.
    path = re.compile(r"`((?:benchmarks|sksparseft|tests|examples)/[\w./-]*?)/?`")
    missing = [f"{page.relative_to(ROOT)}: {m.group(1)}" for page in DOC_PAGES
               for m in path.finditer(page.read_text()) if "*" not in m.group(1) and not (ROOT / m.group(1)).exists()]
    assert missing == []


def test_the_results_page_gives_the_release_first_and_the_research_log_keeps_the_screens():
    text = (ROOT / "docs" / "results.md").read_text()
    other = text.index("\n## Other measurements\n")
    where = {m.group(2): m.start() for m in render.BLOCK.finditer(text)}
    assert where["release-results"] < other
    assert all(where[name] > other for name in ["comparisons-current", "interpolation", "oos", "multilabel",
                                                "serving", "exports"])
    assert re.findall(r"^## (.+)$", text, re.M) == ["This release", "Other measurements"]
    research = {m.group(2) for m in render.BLOCK.finditer((ROOT / "docs" / "research.md").read_text())}
    assert {"dev-screen", "dev-variants", "comparisons-earlier", "budget-screen"} <= research


# -- the README and the guide: a product manual that shows this release's rows only ---------------
#: The guide: every page of docs/ but the results page and the research log (dated by design).
GUIDE = [p for p in sorted((ROOT / "docs").glob("*.md")) if p.name not in ("results.md", "research.md")]
CODE = re.compile(r"^```.*?^```", re.S | re.M)


def _prose(page):
    """A page's own words: its text less the rendered blocks and the code blocks."""
    return CODE.sub("", render.BLOCK.sub("", page.read_text()))


def test_the_readme_is_short_and_names_nothing_outside_the_repository():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 120
    assert "../" not in text and "shared/data" not in text
    assert re.findall(r"\b0\.\d+\.\d+\b", render.BLOCK.sub("", text)) == []  # versions live in CHANGELOG.md
    assert re.findall(r"^## (.+)$", text, re.M)[:4] == [
        "When to use it, and when not", "Set-up: two commands", "Ten lines", "What it scores and what a fit costs"]


@pytest.mark.parametrize("page", GUIDE, ids=lambda p: p.name)
def test_a_guide_page_is_short_and_names_no_release_outside_its_captions(page):
    assert len(page.read_text().splitlines()) <= 150
    assert re.findall(r"\b0\.\d+\.\d+\b", _prose(page)) == []


#: what a measured figure looks like in prose: an accuracy, seconds, a speed ratio
FIGURE = re.compile(r"\b0\.\d{3,}\b|\b\d+(?:\.\d+)? ?(?:ms|s|seconds|minutes?|hours?)\b(?! per)"
                    r"|\b\d+(?:\.\d+)?(?:x|×)(?=\W)|\b\d+(?:\.\d+)? times\b|\ba minute or two\b")


@pytest.mark.parametrize("page", [ROOT / "README.md", *GUIDE], ids=lambda p: p.name)
def test_every_figure_of_the_readme_and_the_guide_is_rendered_from_a_row(page):
    assert FIGURE.findall(_prose(page)) == []


@pytest.mark.parametrize("page", [ROOT / "README.md", *GUIDE], ids=lambda p: p.name)
def test_the_readme_and_the_guide_show_only_the_release_tables(page):
    names = {m.group(2) for m in render.BLOCK.finditer(page.read_text())}
    assert names <= set(render.RELEASE_BLOCKS) | set(render.REFERENCE_BLOCKS), page.name


def test_the_release_tables_leave_out_rows_of_other_fit_code_or_defaults():
    from benchmarks.fingerprint import release_fingerprint
    from benchmarks.render.release import EMPTY

    def row(method, accuracy, fingerprint, seed=0):
        return {"config": "release", "method": method, "dataset": "banking77", "regime": "10shot", "seed": seed,
                "params": {}, "fingerprint": fingerprint, "accuracy": accuracy, "macro_f1": accuracy, "fit_s": 40.0,
                "predict_s": 1.0, "n_train": 770, "n_test": 3080, "peak_rss_mib": 1000.0, "trainable_params": 1,
                "version": "9.9.9", "date": "2026-12-07", "device": "cpu (2 cores)", "torch": "2.13.0+cpu"}

    today = release_fingerprint("random")
    files = {"release": [row("random", 0.8123, today), row("random", 0.7777, "0123456789ab", seed=1),
                         dict(row("frozen_lr_cv", 0.6543, "0123456789ab"), fit_s=987.0)]}
    classifier = {name: renderer for name, renderer in render.RELEASE_BLOCKS.items() if name.startswith("release")}
    for name, renderer in classifier.items():
        text = "\n".join(renderer(files, False))
        assert "0.8123" in text or name == "release-costs", name  # the costs table shows seconds, not accuracy
        assert "0.7777" not in text and "0.6543" not in text and "987" not in text, name
        assert "seed 0" in text or name in ("release-costs", "release-results"), name  # one seed is named
    stale = {"release": [dict(r, fingerprint="0123456789ab") for r in files["release"]]}
    assert all(renderer(stale, False) == EMPTY for renderer in classifier.values())


def test_the_slots_table_leaves_out_rows_of_other_tagger_code_or_defaults():
    from benchmarks.fingerprint import recorded
    from benchmarks.render.slots import EMPTY, slots_table

    def row(method, f1, fingerprint, seed=0):
        return {"config": "slots", "dataset": "atis", "method": method, "seed": seed, "fingerprint": fingerprint,
                "fit_s": 100.0, "n_train": 4478, "test_n": 893, "dev_n": 500, "test_slot_f1": f1,
                "test_intent_acc": 0.9, "test_frame_acc": 0.8, "dev_slot_f1": f1, "dev_intent_acc": 0.9,
                "version": "9.9.9", "date": "2026-12-07", "device": "cpu (2 cores)", "torch": "2.13.0+cpu"}

    today = recorded()["slots"]["random"]
    files = {"slots": [row("random", 0.9123, today), row("random", 0.7777, "0123456789ab", seed=1)]}
    text = "\n".join(slots_table(files))
    assert "0.9123" in text and "0.7777" not in text
    assert slots_table({"slots": [dict(r, fingerprint="0123456789ab") for r in files["slots"]]}) == EMPTY
