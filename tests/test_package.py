"""House rules of the package, as tests: a test file per module, short modules, no benchmarks imports,
no module importing a deprecated path, one torch floor in pyproject.toml and CI."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sksparseft

PACKAGE = Path(sksparseft.__file__).parent
TESTS = Path(__file__).parent
ROOT = TESTS.parent
# Packages tested as a whole: tests/test_strategies.py, tests/test_datasets.py, tests/test_tagging*.py (the tagger).
WHOLE = ("strategies", "datasets", "tagging")
MAX_LINES = 450


def _modules(include_whole=False):
    """Every .py file of the package, as paths relative to it."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if "__pycache__" in rel.parts:
            continue
        if not include_whole and rel.parts[0] in WHOLE:
            continue
        out.append(rel)
    return out


def _test_name(rel):
    return f"test_{rel.stem.lstrip('_')}.py"


def test_module_file_names_are_unique():
    """Tests are flat in tests/: two modules of one name would share a test file."""
    stems = [rel.stem for rel in _modules() if rel.name not in ("__init__.py", "__main__.py")]
    assert sorted(s for s in set(stems) if stems.count(s) > 1) == []


def test_every_module_has_its_test_file():
    missing = [f"{rel} -> tests/{_test_name(rel)}" for rel in _modules()
               if rel.name not in ("__init__.py", "__main__.py") and not (TESTS / _test_name(rel)).exists()]
    missing += [f"{name}/ -> tests/test_{name}.py" for name in WHOLE if not (TESTS / f"test_{name}.py").exists()]
    assert missing == []


def test_no_module_is_over_the_line_limit():
    long = {str(rel): n for rel in _modules(include_whole=True)
            if (n := len((PACKAGE / rel).read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def _imported_modules(rel):
    """Absolute names of what a module imports (relative imports resolved against its package)."""
    tree = ast.parse((PACKAGE / rel).read_text(encoding="utf-8"))
    package = ["sksparseft", *rel.parts[:-1]]  # a module's package is its folder (an __init__.py's too)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names.append(".".join(base + ([node.module] if node.module else [])))
            else:
                names.append(node.module)
    return names


def test_no_module_imports_the_benchmarks():
    """The lab (benchmarks/) is not installed with the package: no module imports it, by statement or by name."""
    offenders = {str(rel): name for rel in _modules(include_whole=True) for name in _imported_modules(rel)
                 if name == "benchmarks" or name.startswith("benchmarks.")}
    dynamic = re.compile(r"""(import_module|__import__)\(\s*["']benchmarks\b""")
    offenders |= {str(rel): "dynamic import" for rel in _modules(include_whole=True)
                  if dynamic.search((PACKAGE / rel).read_text(encoding="utf-8"))}
    assert offenders == {}


def test_no_module_imports_an_old_path_by_name():
    from sksparseft._moved import MOVED

    offenders = {str(rel): name for rel in _modules(include_whole=True) if rel.name != "_moved.py"
                 for name in _imported_modules(rel) if name in MOVED}
    assert offenders == {}


IMPORT_ALL = r"""
import importlib, pkgutil, sys, warnings

warnings.simplefilter("error", DeprecationWarning)
import sksparseft
from sksparseft._moved import MOVED

names = [m.name for m in pkgutil.walk_packages(sksparseft.__path__, "sksparseft.")]
failed = []
for name in names:
    if name in MOVED or name.rsplit(".", 1)[-1] == "__main__":
        continue
    try:
        importlib.import_module(name)
    except DeprecationWarning as exc:
        failed.append(f"{name}: {exc}")
print(len(names))
print("\n".join(failed))
"""


def test_importing_every_module_raises_no_deprecation_warning():
    """In a fresh interpreter: in this one the modules are imported already, and would not warn again."""
    proc = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, cwd=TESTS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    count, *failed = proc.stdout.strip().split("\n")
    assert int(count) > 30
    assert [f for f in failed if f] == []


def _requirement(name):
    """The requirement on ``name`` in pyproject.toml's dependencies."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from packaging.requirements import Requirement

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    found = [r for r in map(Requirement, deps) if r.name == name]
    assert len(found) == 1, found
    return found[0]


def test_ci_states_the_torch_floor_pyproject_asks_for():
    """.ci/run's comment says which torch the package asks for, beside the torch it pins: the same floor as
    pyproject.toml's, and the pin within it."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    stated = re.findall(r"the package asks for torch>=([\w.]+)", ci)
    pinned = set(re.findall(r"torch==([\w.+]+)", ci))
    torch = _requirement("torch")
    floors = [s.version for s in torch.specifier if s.operator == ">="]
    assert stated == floors and len(floors) == 1, (stated, str(torch.specifier))
    assert len(pinned) == 1 and torch.specifier.contains(pinned.pop())
