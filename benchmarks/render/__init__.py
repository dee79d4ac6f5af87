"""Render the raw rows of benchmarks/results/ into the docs: every table and plot of measurements.

Each rendered block sits between ``<!-- rendered:NAME -->`` and ``<!-- /rendered:NAME -->`` in
README.md or a page of docs/, and is rewritten whole from the rows (``BLOCKS`` below); prose
around it is the docs' own. The renderers live by topic in this package's modules. The package's reference tables (``REFERENCE_BLOCKS``: parameters,
strategies) use the same markers but are rendered by ``sksparseft._docs`` from the docstring and
the strategy classes; this module leaves them to it. ``python -m benchmarks.run --render-only``
runs both; the test suite fails when a block differs from what its rows give.
"""

from __future__ import annotations

from ..common import RESULTS
from .comparisons import _comparisons, _summary, summary_config
from .budget import budget_screen, main_job_release, speed_costs
from .release import release_claims, release_costs, release_results, release_table
from .cost import _cost, _exports, _main_job, _processes, _search
from .dev_splits import DEV_VARIANTS, _dev_screen, _dev_variants, _interpolation
from .features import _multilabel, _oos, _serving
from .rows import BLOCK, DOCS, REFERENCE_BLOCKS, ROOT, newest_runs, render_reference_tables, rows_by_file
from .screens import (_ce_screen, _fast_full, _kernels, _kernels_full, _patience_check, _patience_replay,
                      _precision_screen, _speed_screen, replay_stop)
from .slots import slots_screen, slots_table
from .token_groups import _group_features, _token_structure

__all__ = ["BLOCK", "BLOCKS", "DEV_VARIANTS", "DOCS", "REFERENCE_BLOCKS", "RELEASE_BLOCKS", "RESULTS", "newest_runs", "render",
           "rendered", "replay_stop", "rows_by_file", "summary_config"]


#: The blocks README.md and the guide may show: rows of this release only (benchmarks/render/release.py).
RELEASE_BLOCKS = {
    "release": release_table,
    "release-results": release_results,
    "release-costs": release_costs,
    "release-claims": release_claims,
    "slots": slots_table,
}

BLOCKS = {
    **RELEASE_BLOCKS,
    "summary": _summary,
    "serving": _serving,
    "oos": _oos,
    "multilabel": _multilabel,
    "comparisons-current": lambda files, plots: _comparisons(files, True, plots),
    "comparisons-earlier": lambda files, plots: _comparisons(files, False, plots),
    "interpolation": _interpolation,
    "dev-variants": _dev_variants,
    "dev-screen": _dev_screen,
    "speed-screen": _speed_screen,
    "precision-screen": _precision_screen,
    "fast-full": _fast_full,
    "kernels": _kernels,
    "kernels-full": _kernels_full,
    "ce-screen": _ce_screen,
    "ce-screen-full": lambda files, plots: _ce_screen(files, plots, "ce_screen_full"),
    "epoch-screen": lambda files, plots: _ce_screen(files, plots, "epoch_screen"),
    "epoch-screen-full": lambda files, plots: _ce_screen(files, plots, "epoch_screen_full"),
    "cap-screen-full": lambda files, plots: _ce_screen(files, plots, "cap_screen_full"),
    "patience-screen": lambda files, plots: _ce_screen(files, plots, "patience_screen"),
    "patience-screen-full": lambda files, plots: _ce_screen(files, plots, "patience_screen_full"),
    "patience-replay": _patience_replay,
    "patience-check-full": _patience_check,
    "budget-screen": budget_screen,
    "speed-costs": speed_costs,
    "main-job-release": main_job_release,
    "budget-screen-full": lambda files, plots: budget_screen(files, plots, "budget_screen_full"),
    "search": _search,
    "main-job": _main_job,
    "search-bf16": lambda files, plots: _search(files, plots, "search_bf16"),
    "token-structure": _token_structure,
    "group-features": _group_features,
    "processes": _processes,
    "cost": _cost,
    "exports": _exports,
    "slots-screen": slots_screen,
}


def rendered(text, files, plots=False):
    """``text`` with every rendered block rewritten from ``files``' rows."""
    def fill(m):
        name = m.group(2)
        if name in REFERENCE_BLOCKS:
            return m.group(0)  # the package renders it
        if name not in BLOCKS:
            raise KeyError(f"no renderer for the block {name!r}; known: {sorted(BLOCKS)}")
        body = "\n".join(BLOCKS[name](files, plots)).strip("\n")
        return f"{m.group(1)}{body}\n{m.group(4)}"

    return BLOCK.sub(fill, text)


def render(plots=True):
    if render_reference_tables is not None:
        for rel in render_reference_tables(ROOT):
            print(f"rendered {rel}")
    files = rows_by_file()
    for doc in DOCS:
        text = doc.read_text()
        new = rendered(text, files, plots)
        if new != text:
            doc.write_text(new)
            print(f"rendered {doc.relative_to(ROOT)}")
