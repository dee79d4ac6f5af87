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


def test_the_benchmarks_page_gives_results_first_and_research_notes_after():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    notes = text.index("\n## Research notes\n")
    where = {m.group(2): m.start() for m in render.BLOCK.finditer(text)}
    results = ["comparisons-current", "interpolation", "oos", "multilabel", "serving", "exports"]
    research = ["dev-screen", "dev-variants", "comparisons-earlier"]
    assert all(where[name] < notes for name in results) and all(where[name] > notes for name in research)
    assert [h for h in re.findall(r"^## (.+)$", text, re.M)] == ["Current defaults", "Research notes"]
