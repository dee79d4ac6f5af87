"""What the lab's tests share with the product's: tests/cases.py and tests/reference_cases.py, read by
path (tests/ is no package), so that both suites fit the same tiny model on the same toy task."""

import importlib.util
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2] / "tests"


def _product_module(name):
    spec = importlib.util.spec_from_file_location(f"product_tests_{name}", TESTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_cases, _reference = _product_module("cases"), _product_module("reference_cases")
FAST, toy_task, make_tiny_bert = _cases.FAST, _cases.toy_task, _reference.make_tiny_bert
