"""Finetuning strategies, one small module each, registered in one table.

Every strategy has the same shape (:class:`~sksparseft.strategies.base.Strategy`): a name, the
learning rate customary for the method, the options it reads, and ``setup(module, ctx)``,
which makes trainable exactly what the method trains.
"""

from .base import FitContext, MaskStrategy, Strategy
from .bitfit import BitFit
from .fisher import Fisher
from .full import Full
from .layers import Layers
from .lora import LoRA
from .prefix import PrefixTuning, register
from .random_mask import RandomMask
from .random_rows import RandomRows
from .token_sparse import TokenSparse

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


__all__ = ["STRATEGIES", "FitContext", "MaskStrategy", "Strategy", "from_description", "get_strategy",
           "register_strategy"]
