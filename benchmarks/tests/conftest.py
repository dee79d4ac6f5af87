"""The lab's fixtures: the product suite's tiny model and toy task (tests/cases.py, tests/reference_cases.py)."""

import pytest

from .cases import make_tiny_bert, toy_task


@pytest.fixture(scope="package")
def tiny_model(tmp_path_factory):
    """A 2-layer BERT built from a config (seed 0), with the embedded model's tokenizer."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="package")
def toy_data():
    return toy_task()
