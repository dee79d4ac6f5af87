"""Finetuning strategies, one small module each, registered in one table.

Every strategy has the same shape (:class:`~sksparseft.strategies.base.Strategy`): a name, a
line saying what it trains, the learning rate customary for the method, the options it reads
(a frozen dataclass of typed, documented fields: :mod:`~sksparseft.strategies.options`), and
``setup(module, ctx)``, which makes trainable exactly what the method trains. The table of
strategies in docs/strategies.md is rendered from them (:func:`strategy_table`).
"""

import dataclasses

from .base import FitContext, MaskStrategy, Strategy
from .bitfit import BitFit
from .fisher import Fisher, FisherOptions
from .full import Full
from .layers import Layers, LayersOptions
from .lora import LoRA, LoRAOptions
from .options import checked_options, option, option_rows, options_class
from .prefix import PrefixOptions, PrefixTuning, register
from .random_mask import RandomMask
from .random_rows import RandomRows, RandomRowsOptions
from .token_sparse import TokenSparse, TokenSparseOptions

STRATEGIES = {cls.name: cls for cls in (TokenSparse, Fisher, RandomMask, RandomRows, BitFit, Layers, Full, LoRA, PrefixTuning)}

# A pickled prefix-tuned model names this attention function in its config: register it on import.
register()


def get_strategy(name, options=None):
    """Instantiate the strategy called ``name`` with ``options`` (checked here, before anything loads)."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {sorted(STRATEGIES)}, got {name!r}")
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"strategy_options must be a dict or None, got {options!r}")
    return STRATEGIES[name](**(options or {}))


def option_names(name):
    """The option names of the strategy called ``name`` (none for a name no strategy has)."""
    return {f.name for f in dataclasses.fields(options_class(STRATEGIES[name]))} if name in STRATEGIES else set()


def from_description(description):
    """The strategy a fitted estimator's ``strategy_`` dict describes."""
    settings = dict(description)
    return get_strategy(settings.pop("strategy"), settings)


def register_strategy(cls):
    """Make a :class:`Strategy` subclass available as ``strategy=cls.name`` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Strategy)) or not cls.name:
        raise TypeError("register_strategy takes a Strategy subclass with a name")
    STRATEGIES[cls.name] = cls
    return cls


def _rate(lr):
    """``1e-3``, ``5e-5``, ``2.5e-4``: a learning rate as people write it."""
    mantissa, exponent = f"{lr:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def _cell(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def strategy_table():
    """Markdown: every registered strategy (what it trains, its learning rate), then every option.

    Rendered into docs/strategies.md from the classes themselves (``trains``,
    ``default_learning_rate``, ``options``), so it cannot drift from them.
    """
    lines = ["| strategy | trains | default lr | options |", "|---|---|---|---|"]
    options = ["| strategy | option | default | accepts | meaning |", "|---|---|---|---|---|"]
    for name, cls in STRATEGIES.items():
        rows = option_rows(options_class(cls))
        names = ", ".join(f"`{row[0]}`" for row in rows)
        lines.append(f"| `{name}` | {_cell(cls.trains)} | {_rate(cls.default_learning_rate)} | {names} |")
        options += [f"| `{name}` | `{key}` | `{default!r}` | {accepts} | {_cell(doc)} |"
                    for key, default, accepts, doc in rows]
    return "\n".join([*lines, "", *options])


__all__ = ["STRATEGIES", "FisherOptions", "FitContext", "LayersOptions", "LoRAOptions", "MaskStrategy", "PrefixOptions",
           "RandomRowsOptions", "Strategy", "TokenSparseOptions", "from_description", "get_strategy", "option",
           "option_rows", "options_class", "register_strategy", "strategy_table"]
