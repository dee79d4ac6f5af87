"""Reference tables rendered from their one source into README.md and docs/.

The parameters and fitted attributes of :class:`~sksparseft.TokenSparseClassifier` are written
once, in the numpydoc "Parameters" and "Attributes" sections of its docstring; the strategies once, in their classes (``trains``,
``default_learning_rate``, ``options``). :func:`render_reference_tables` rewrites the blocks
between ``<!-- rendered:NAME -->`` and ``<!-- /rendered:NAME -->`` that hold them (also run by
``python -m benchmarks.run --render-only``); tests/test_docs_tables.py fails when one is stale.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from pathlib import Path

#: The same block markers as benchmarks/render's (which renders the measured tables).
BLOCK = re.compile(r"(<!-- rendered:([a-z0-9_-]+) -->\n)(.*?)(<!-- /rendered:\2 -->)", re.S)
#: The blocks rendered here, and the files that hold them.
REFERENCE_BLOCKS = ("parameters", "attributes", "strategies")
REFERENCE_FILES = ("docs/parameters.md", "docs/strategies.md")


@dataclass(frozen=True)
class Parameter:
    """One entry of a numpydoc "Parameters" section."""

    name: str
    type: str
    #: as written after ``default=``; None when the entry gives none
    default: str | None
    #: the description, joined into one line, in markdown
    text: str


def docstring_parameters(obj, section="Parameters"):
    """The entries of ``obj``'s numpydoc ``section`` ("Parameters", "Attributes"), in order."""
    lines = inspect.cleandoc(obj.__doc__ or "").splitlines()
    starts = [i for i in range(len(lines) - 1) if lines[i] == section and set(lines[i + 1]) == {"-"}]
    if not starts:
        raise ValueError(f"{obj.__name__}'s docstring has no {section} section")
    entries = []
    for i in range(starts[0] + 2, len(lines)):
        line = lines[i]
        if line and not line[0].isspace():
            if i + 1 < len(lines) and lines[i + 1] and set(lines[i + 1]) == {"-"}:
                break  # the next section
            name, _, kind = line.partition(" : ")
            kind, _, default = kind.rpartition(", default=") if ", default=" in kind else (kind, "", None)
            entries.append([name.strip(), kind.strip(), default, []])
        elif entries:
            entries[-1][3].append(line.strip())
    return [Parameter(name, kind, default, _markdown(" ".join(t for t in text if t)))
            for name, kind, default, text in entries]


def _markdown(text):
    """reStructuredText inline markup as markdown: ``x`` and :role:`~a.x` become `x`."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text)
    return re.sub(r"``(.+?)``", r"`\1`", text)


def _cell(text):
    return text.replace("|", "\\|")


def parameter_table(obj=None):
    """Markdown table ``parameter | accepts | default | meaning`` of ``obj``'s docstring (the estimator's by default)."""
    if obj is None:
        from .estimator import TokenSparseClassifier as obj
    rows = ["| parameter | accepts | default | meaning |", "|---|---|---|---|"]
    for p in docstring_parameters(obj):
        default = f"`{p.default}`" if p.default is not None else ""
        rows.append(f"| `{p.name}` | {_cell(_markdown(p.type))} | {_cell(default)} | {_cell(p.text)} |")
    return "\n".join(rows)


def attribute_table(obj=None):
    """Markdown table ``attribute | type | meaning`` of ``obj``'s "Attributes" section (the estimator's by default)."""
    if obj is None:
        from .estimator import TokenSparseClassifier as obj
    rows = ["| attribute | type | meaning |", "|---|---|---|"]
    for p in docstring_parameters(obj, "Attributes"):
        names = ", ".join(f"`{n.strip()}`" for n in p.name.split(","))
        rows.append(f"| {names} | {_cell(_markdown(p.type))} | {_cell(p.text)} |")
    return "\n".join(rows)


def reference_table(name):
    """The markdown of the rendered block ``name`` (one of :data:`REFERENCE_BLOCKS`)."""
    if name == "parameters":
        return parameter_table()
    if name == "attributes":
        return attribute_table()
    if name == "strategies":
        from .strategies import strategy_table

        return strategy_table()
    raise KeyError(f"no reference table {name!r}; known: {list(REFERENCE_BLOCKS)}")


def rendered(text, tables=None):
    """``text`` with its reference blocks rewritten; blocks of other renderers are left as they are."""
    tables = tables if tables is not None else {name: reference_table(name) for name in REFERENCE_BLOCKS}

    def fill(m):
        if m.group(2) not in tables:
            return m.group(0)
        return f"{m.group(1)}{tables[m.group(2)].strip(chr(10))}\n{m.group(4)}"

    return BLOCK.sub(fill, text)


def render_reference_tables(root="."):
    """Rewrite the reference blocks of README.md and docs/ under ``root``; return the files changed."""
    tables = {name: reference_table(name) for name in REFERENCE_BLOCKS}
    changed = []
    for rel in REFERENCE_FILES:
        path = Path(root) / rel
        text = path.read_text()
        new = rendered(text, tables)
        if new != text:
            path.write_text(new)
            changed.append(rel)
    return changed
