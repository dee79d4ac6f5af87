"""What made a result row, as a short hash: the release's rows are those whose fingerprint is today's.

- A fit of the package (a strategy at the estimator's defaults, plus a config's parameters): the
  fit code (every module of ``sksparseft`` that a fit runs: the estimator, ``fit/``, ``model/``,
  ``strategies/``, ``text/``), compared as syntax trees so comments and docstrings do not count,
  and the estimator's default parameters.
- A reference: the code of ``benchmarks/compare.py`` that builds it; a peer adds its child script
  and its environment's requirements (:mod:`benchmarks.peers`).
- A tagger's fit on ATIS (:mod:`benchmarks.slots`): the fit code, the tagger's modules a fit runs and
  its default parameters; the CRF: its builder's code.

The release's fingerprints are recorded in ``benchmarks/release_fingerprint.json``
(``python -m benchmarks.fingerprint --record``, when the ``release`` config has run): README.md and
the guide render only rows that carry them (tests/test_docs.py), and a lab test fails when today's
code gives other fingerprints (benchmarks/tests/test_fingerprint.py), so a change to the fit code
or a default leaves the release's tables to be made again by ``--config release``. Syntax trees
differ between Python versions: that test compares on the Python version that recorded them.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import sys
from pathlib import Path

from .common import ROOT

PACKAGE = ROOT / "sksparseft"
#: the parts of the package a fit runs (the rest: io, exports, CLI, plotting, explanations)
FIT_CODE = ("estimator.py", "fit", "model", "strategies", "text")


def tree_dump(source):
    """A module's syntax tree as text, its docstrings dropped (comments never reach the tree)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


def _code_digest(paths):
    """sha256 over the files' names and syntax trees, in a fixed order."""
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(Path(path).relative_to(ROOT).as_posix().encode())
        h.update(tree_dump(Path(path).read_text()).encode())
    return h.hexdigest()


def fit_code_files():
    files = []
    for part in FIT_CODE:
        p = PACKAGE / part
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return files


def default_params():
    """The estimator's default parameters, as JSON (the model's name, not a path)."""
    from sksparseft import TokenSparseClassifier

    return json.dumps(TokenSparseClassifier().get_params(deep=False), sort_keys=True, default=repr)


def fit_fingerprint():
    h = hashlib.sha256((_code_digest(fit_code_files()) + default_params()).encode())
    return h.hexdigest()[:12]


def reference_fingerprint(name):
    from . import compare

    parts = [inspect.getsource(compare.reference), inspect.getsource(compare.FrozenEmbeddings),
             repr(compare.FROZEN_LR_CS)]
    if name in ("setfit", "fastfit"):
        from . import peers

        parts += [(peers.HERE / "child.py").read_text(), peers.requirements(name).read_text()]
    parts.append(name)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def fingerprint(method):
    """The fingerprint a row of ``method`` (a reference's name, or a strategy's) made today would carry."""
    from .compare import ALL_REFERENCES, BASELINES

    return reference_fingerprint(method) if method in ALL_REFERENCES + BASELINES else fit_fingerprint()


RECORDED = ROOT / "benchmarks" / "release_fingerprint.json"


def recorded():
    """The release's fingerprints as recorded: ``{"python": "3.11", "fit": ..., "references": {name: ...}}``."""
    return json.loads(RECORDED.read_text())


def release_fingerprint(method, release=None):
    """The fingerprint a ``method``'s rows carry in this release (recorded, not computed); ``release``: as read."""
    from .compare import ALL_REFERENCES, BASELINES

    release = release or recorded()
    return release["references"].get(method) if method in ALL_REFERENCES + BASELINES else release["fit"]


def record():
    """Write today's fingerprints as the release's."""
    from .compare import ALL_REFERENCES

    from .slots import METHODS, fingerprint as slots_fingerprint

    release = {"python": f"{sys.version_info.major}.{sys.version_info.minor}", "fit": fit_fingerprint(),
               "references": {name: reference_fingerprint(name) for name in ALL_REFERENCES},
               "slots": {name: slots_fingerprint(name) for name in METHODS}}
    RECORDED.write_text(json.dumps(release, indent=1) + "\n")
    return release


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        raise SystemExit("usage: python -m benchmarks.fingerprint --record")
    print(record())
