"""One fact, one place: the parameter and strategy tables are rendered from the docstring and the classes."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import pickle
import re
import typing
from pathlib import Path

import pytest

from sksparseft import TokenSparseClassifier
from sksparseft._docs import REFERENCE_BLOCKS, REFERENCE_FILES, docstring_parameters, reference_table, rendered
from sksparseft.strategies import STRATEGIES, from_description, get_strategy, option_rows, options_class, strategy_table
from sksparseft.strategies.base import MaskStrategy
from sksparseft.strategies.token_sparse import TokenSparse

ROOT = Path(__file__).resolve().parents[1]
RE_RENDER = 'python -c "from sksparseft._docs import render_reference_tables; render_reference_tables()"'

# The options, defaults and their order (0.6.0's, plus min_layer and cache_frozen for random and
# cache_frozen for layers in 0.7.0; rows for token_sparse, min_layer, cache_frozen and rows for fisher in
# 0.7.1; ce_min_layer for the four mask strategies in 0.7.5): describe(), and so the ``strategy_`` of saved files.
OPTIONS = {
    "token_sparse": {"density": 0.01, "n_sensitivity_samples": 256, "embedding_rows": True, "min_layer": None,
                     "cache_frozen": False, "rows": False, "ce_min_layer": None},
    "fisher": {"density": 0.01, "n_sensitivity_samples": 256, "embedding_rows": False, "min_layer": None,
               "cache_frozen": False, "rows": False, "ce_min_layer": None},
    "random": {"density": 0.01, "min_layer": None, "cache_frozen": False, "ce_min_layer": None},
    "random_rows": {"density": 0.01, "min_layer": None, "cache_frozen": False, "ce_min_layer": None},
    "bitfit": {},
    "layers": {"n_layers": 2, "cache_frozen": False},
    "full": {},
    "lora": {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": None},
    "prefix": {"n_prefix": 16},
}


@pytest.mark.parametrize("rel", REFERENCE_FILES)
def test_every_rendered_reference_block_is_current(rel):
    text = (ROOT / rel).read_text()
    assert text == rendered(text), f"{rel}: a reference table is stale; run {RE_RENDER}"


def test_the_files_hold_the_blocks_where_expected():
    where = {"docs/parameters.md": {"parameters", "attributes"},
             "docs/strategies.md": {"strategies"}}
    for rel, names in where.items():
        text = (ROOT / rel).read_text()
        for name in names:
            assert f"<!-- rendered:{name} -->\n" in text and f"<!-- /rendered:{name} -->" in text, (rel, name)
    assert set().union(*where.values()) == set(REFERENCE_BLOCKS)


def test_every_init_parameter_is_in_the_docstring_with_its_default():
    signature = [p for p in inspect.signature(TokenSparseClassifier.__init__).parameters.values() if p.name != "self"]
    documented = docstring_parameters(TokenSparseClassifier)
    assert [p.name for p in documented] == [p.name for p in signature]  # every one, in the signature's order
    for doc, sig in zip(documented, signature):
        assert doc.default is not None, f"{doc.name}: no default= in the docstring"
        assert ast.literal_eval(doc.default) == sig.default, doc.name
        assert doc.text, f"{doc.name}: no description in the docstring"


def test_the_parameter_table_has_a_row_per_parameter():
    table = reference_table("parameters").splitlines()
    names = [p.name for p in docstring_parameters(TokenSparseClassifier)]
    assert [row.split(" | ")[0].removeprefix("| ") for row in table[2:]] == [f"`{n}`" for n in names]
    assert all(len(re.findall(r"(?<!\\)\|", row)) == 5 for row in table)  # four columns: no stray pipe splits a row


def test_the_docstring_names_every_fitted_attribute_and_nothing_a_fit_lacks(tiny_model, toy_data):
    from cases import FAST

    clf = TokenSparseClassifier(tiny_model, **dict(FAST, random_state=0, max_epochs=1)).fit(*toy_data)
    fitted = {k for k in vars(clf) if k.endswith("_") and not k.startswith("_")}
    documented = [n.strip() for p in docstring_parameters(TokenSparseClassifier, "Attributes") for n in p.name.split(",")]
    assert len(documented) == len(set(documented))
    assert set(documented) == fitted, (sorted(fitted - set(documented)), sorted(set(documented) - fitted))
    table = reference_table("attributes")
    assert all(f"`{name}`" in table for name in documented)


def test_every_registered_strategy_is_in_the_strategy_table():
    table = strategy_table()
    for name, cls in STRATEGIES.items():
        assert cls.trains, f"{name}: no one-line 'trains'"
        assert f"| `{name}` | {cls.trains} |" in table
        for key, *_ in option_rows(options_class(cls)):
            assert f"| `{name}` | `{key}` |" in table
    assert "| `full` | every backbone parameter (end-to-end finetuning) | 5e-5 |" in table


def test_describe_is_what_it_was_and_old_descriptions_load():
    for name, options in OPTIONS.items():
        assert list(get_strategy(name).describe().items()) == [("strategy", name), *options.items()]
    # strategy_ as 0.6.0 wrote it for the strategies that gained options: the new ones at their defaults
    assert from_description({"strategy": "random"}).describe() == {"strategy": "random", **OPTIONS["random"]}
    assert from_description({"strategy": "layers", "n_layers": 3}).describe() == {
        "strategy": "layers", "n_layers": 3, "cache_frozen": False}
    # strategy_ of the legacy files in tests/data (saved by 0.5.0); token_sparse gained rows in 0.7.1, ce_min_layer in 0.7.5
    lora = {"alpha": 16, "dropout": 0.1, "r": 2, "strategy": "lora", "target_modules": None}
    assert from_description(lora).describe() == lora
    token = {"cache_frozen": False, "embedding_rows": True, "min_layer": None, "strategy": "token_sparse"}
    assert from_description(token).describe() == {**token, "rows": False, "ce_min_layer": None, "density": 0.01,
                                                   "n_sensitivity_samples": 256}
    # fisher as 0.7.0 wrote it: the options it gained in 0.7.1 at their defaults
    assert from_description({"strategy": "fisher", "embedding_rows": False}).describe() == {
        "strategy": "fisher", **OPTIONS["fisher"]}


def _typed_options():
    for name, cls in STRATEGIES.items():
        spec = options_class(cls)
        hints = typing.get_type_hints(spec)
        for f in dataclasses.fields(spec):
            yield name, f, hints[f.name]


@pytest.mark.parametrize("name,field,hint", list(_typed_options()), ids=lambda v: getattr(v, "name", None))
def test_each_option_rejects_a_wrong_type_and_an_out_of_range_value(name, field, hint):
    assert field.metadata["doc"], f"{name}.{field.name}: no doc"
    kinds = [k for k in typing.get_args(hint) or (hint,) if k is not type(None)]
    wrong = 1 if kinds == [bool] else "a string"  # 1 is no bool; a string is none of the other kinds
    with pytest.raises(ValueError, match=f"strategy_options {field.name} must be .*, got {wrong!r}"):
        get_strategy(name, {field.name: wrong})
    if kinds and kinds[0] in (int, float):
        meta = field.metadata
        assert {meta["low"], meta["above"], meta["below"]} != {None}, f"{name}.{field.name}: a number without a range"
        outside = (meta["low"] - 1 if meta["low"] is not None
                   else meta["above"] if meta["above"] is not None else meta["below"])
        with pytest.raises(ValueError, match=f"strategy_options {field.name} must be"):
            get_strategy(name, {field.name: outside})
    get_strategy(name, {field.name: field.default})  # the default itself passes


@pytest.mark.parametrize("name,options,message", [
    ("layers", {"n_layers": 0}, "strategy_options n_layers must be an integer >= 1, got 0"),
    ("layers", {"n_layers": True}, "strategy_options n_layers must be an integer >= 1, got True"),
    ("token_sparse", {"min_layer": "top"}, "strategy_options min_layer must be an integer >= 0 or None, got 'top'"),
    ("token_sparse", {"cache_frozen": "yes"}, "strategy_options cache_frozen must be True or False, got 'yes'"),
    ("lora", {"dropout": 1.0}, "strategy_options dropout must be a number in [0, 1), got 1.0"),
    ("lora", {"rank": 4}, "strategy_options ['rank'] are not known to strategy 'lora' "
                          "(known: ['alpha', 'dropout', 'r', 'target_modules'])"),
    ("fisher", {"n_layers": 1}, "strategy_options ['n_layers'] are not known to strategy 'fisher' "
                                "(known: ['cache_frozen', 'ce_min_layer', 'density', 'embedding_rows', 'min_layer', "
                                "'n_sensitivity_samples', 'rows'])"),
    ("full", {"r": 1}, "strategy_options ['r'] are not known to strategy 'full' (known: none)"),
])
def test_option_messages(name, options, message):
    with pytest.raises(ValueError) as info:
        get_strategy(name, options)
    assert str(info.value) == message


def test_values_are_kept_as_given_and_the_options_classes_pickle():
    import numpy as np

    assert get_strategy("layers", {"n_layers": np.int64(3)}).settings["n_layers"] == 3
    assert get_strategy("lora", {"target_modules": ("query",)}).settings["target_modules"] == ("query",)
    for cls in STRATEGIES.values():
        spec = options_class(cls)
        assert pickle.loads(pickle.dumps(spec())) == spec()
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(spec(), "anything", 1)


def test_a_strategy_with_a_plain_options_dict_still_works():
    class Plain(MaskStrategy):  # the form of 0.6.0 and earlier
        name = "plain_dict"
        trains = "nothing"
        options = {"k": [1, 2], "flag": True}

    class Typed(TokenSparse):  # a dict of defaults over a parent's typed options keeps their checks
        name = "typed_dict"
        options = {"embedding_rows": False, "min_layer": None}

    assert Plain().describe() == {"strategy": "plain_dict", "k": [1, 2], "flag": True}
    assert Plain(k="anything").settings["k"] == "anything"  # unchecked
    with pytest.raises(ValueError, match=r"\['z'\] are not known to strategy 'plain_dict' \(known: \['flag', 'k'\]\)"):
        Plain(z=1)
    assert Typed(min_layer=1).describe() == {"strategy": "typed_dict", "embedding_rows": False, "min_layer": 1}
    with pytest.raises(ValueError, match="min_layer must be an integer >= 0 or None"):
        Typed(min_layer=-1)
    from sksparseft.strategies import register_strategy

    register_strategy(Plain)
    try:
        assert "| `plain_dict` | `k` | `[1, 2]` | anything |" in strategy_table()
        assert get_strategy("plain_dict", {"flag": False}).describe()["flag"] is False
    finally:
        STRATEGIES.pop("plain_dict", None)
