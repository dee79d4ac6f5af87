"""A strategy's options, declared once as a small frozen dataclass (as peft's ``LoraConfig``).

Each field carries its type, its default and a one-line description (:func:`option`); the
values given as ``strategy_options`` are checked against them here, in one place
(:func:`checked_options`), and the strategy table of docs/strategies.md is rendered from them
(:func:`option_rows`). A strategy that still declares ``options = {"name": default}`` as a
plain dict keeps working: its options are known by name, their values are not checked.
"""

from __future__ import annotations

import copy
import dataclasses
import numbers
import sys
import types
import typing

import numpy as np


def option(default, doc, *, low=None, above=None, below=None, high=None):
    """One field of an options class: its default, a one-line description, and for numbers a range.

    The value must be ``>= low``, ``> above``, ``< below`` and ``<= high`` (each when given).
    """
    return dataclasses.field(default=default, metadata={"doc": doc, "low": low, "above": above, "below": below,
                                                        "high": high})


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A strategy that reads no options."""


def options_from(base, *names, name, **defaults):
    """An options class with the fields ``names`` of ``base`` (same type, range and doc), new defaults."""
    hints = typing.get_type_hints(base)
    specs = [(f.name, hints[f.name], dataclasses.field(default=defaults.get(f.name, f.default), metadata=f.metadata))
             for f in dataclasses.fields(base) if f.name in names]
    cls = dataclasses.make_dataclass(name, specs, frozen=True)
    cls.__module__ = sys._getframe(1).f_globals.get("__name__", base.__module__)  # picklable where assigned to ``name``
    return cls


def options_class(strategy_cls):
    """The options dataclass of a strategy class.

    A plain ``{name: default}`` dict (the form of 0.6.0 and earlier) becomes one: an option
    that a parent strategy's options class declares keeps its type, range and doc there, any
    other is accepted unchecked.
    """
    spec = strategy_cls.options
    if isinstance(spec, type) and dataclasses.is_dataclass(spec):
        return spec
    if not isinstance(spec, dict):
        raise TypeError(f"{strategy_cls.__name__}.options must be a dataclass or a dict, got {spec!r}")
    made = strategy_cls.__dict__.get("_options_made")
    if made is None or made[0] is not spec:
        typed = {}
        for parent in reversed(strategy_cls.__mro__[1:]):
            declared = parent.__dict__.get("options")
            if isinstance(declared, type) and dataclasses.is_dataclass(declared):
                hints = typing.get_type_hints(declared)
                typed.update({f.name: (hints[f.name], f.metadata) for f in dataclasses.fields(declared)})
        fields = [(key, typed.get(key, (typing.Any, {}))[0], dataclasses.field(
                   default_factory=lambda v=value: copy.deepcopy(v), metadata=typed.get(key, (None, {}))[1]))
                  for key, value in spec.items()]
        made = (spec, dataclasses.make_dataclass(f"{strategy_cls.__name__}Options", fields, frozen=True))
        strategy_cls._options_made = made
    return made[1]


def option_rows(options_cls):
    """``[(name, default, what it accepts, doc)]`` of an options class, in declaration order."""
    hints = typing.get_type_hints(options_cls)
    return [(f.name, _default(f), _accepts(hints[f.name], f.metadata), f.metadata.get("doc", ""))
            for f in dataclasses.fields(options_cls)]


def checked_options(strategy_cls, given):
    """``given`` completed with the defaults, in declaration order; a ValueError names a wrong option."""
    cls = options_class(strategy_cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = set(given) - set(known)
    if unknown:
        raise ValueError(f"strategy_options {sorted(unknown)} are not known to strategy {strategy_cls.name!r}"
                         f" (known: {sorted(known) or 'none'})")
    hints = typing.get_type_hints(cls)
    settings = {}
    for f in dataclasses.fields(cls):
        value = given[f.name] if f.name in given else _default(f)
        if not _fits(hints[f.name], f.metadata, value):
            raise ValueError(f"strategy_options {f.name} must be {_accepts(hints[f.name], f.metadata)}, got {value!r}")
        settings[f.name] = value
    return settings


def _default(f):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _kinds(tp):
    """The types a union allows, None aside, and whether it allows None."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    return [a for a in args if a is not type(None)], type(None) in args


def _fits_kind(kind, meta, value):
    if kind is typing.Any:
        return True
    if kind is bool:
        return isinstance(value, (bool, np.bool_))
    if kind in (int, float):
        number = numbers.Integral if kind is int else numbers.Real
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, number):
            return False
        low, above, below, high = (meta.get(k) for k in ("low", "above", "below", "high"))
        return ((low is None or value >= low) and (above is None or value > above) and (below is None or value < below)
                and (high is None or value <= high))
    if typing.get_origin(kind) in (list, tuple):
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    return isinstance(value, kind)


def _fits(tp, meta, value):
    kinds, none_ok = _kinds(tp)
    return (value is None and none_ok) or any(_fits_kind(k, meta, value) for k in kinds)


def _accepts(tp, meta):
    """What a value must be, in words: ``an integer >= 1``, ``True or False``, ``a number in [0, 1)``."""
    kinds, none_ok = _kinds(tp)
    words = []
    for kind in kinds:
        if kind is typing.Any:
            return "anything"
        if kind is bool:
            words.append("True or False")
        elif kind in (int, float):
            low, above, below, high = (meta.get(k) for k in ("low", "above", "below", "high"))
            bound = "[" if low is not None else "(" if above is not None else None
            noun = "an integer" if kind is int else "a number"
            if bound and (below is not None or high is not None):
                end = f"{below})" if below is not None else f"{high}]"
                words.append(f"{noun} in {bound}{low if low is not None else above}, {end}")
            else:
                limits = [f"{op} {v}" for op, v in ((">=", low), (">", above), ("<", below), ("<=", high))
                          if v is not None]
                words.append(" ".join([noun, " and ".join(limits)]).strip())
        elif typing.get_origin(kind) in (list, tuple):
            words.append("a list of strings")
        else:
            words.append(f"a {kind.__name__}")
    return " or ".join(words + (["None"] if none_ok else []))
