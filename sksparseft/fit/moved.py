"""Constructor parameters that moved into the strategies' options, honoured with a FutureWarning.

``density`` and ``n_sensitivity_samples`` concern the mask strategies only, so since 0.9.0 they
are options of those strategies (``strategy_options={"density": 0.05}``). Until 0.11.0 the old
parameters still work: a value given there warns and is passed on to the strategy (a strategy
that has no such option ignores it, as it did before).
"""

from __future__ import annotations

import warnings

#: the parameters that moved; ``"deprecated"`` (their default) means not given
MOVED = ("density", "n_sensitivity_samples")
NOT_GIVEN = "deprecated"
REMOVED_IN = "0.11.0"


def given(value):
    return not (isinstance(value, str) and value == NOT_GIVEN)


def strategy_options(est, known):
    """``est.strategy_options`` with the moved parameters ``est`` was given, where the strategy knows them.

    ``known``: the option names of ``est``'s strategy. Giving one both ways is an error.
    """
    options = dict(est.strategy_options or {})
    for name in MOVED:
        value = getattr(est, name, NOT_GIVEN)
        if not given(value):
            continue
        if name in options:
            raise ValueError(f"{name} is given twice, as a parameter and in strategy_options: give it in "
                             f"strategy_options only")
        warnings.warn(f"the parameter {name} moved into strategy_options in 0.8.0 and is removed in {REMOVED_IN}: "
                      f"pass strategy_options={{{name!r}: {value!r}}}", FutureWarning, stacklevel=4)
        if name in known:
            options[name] = value
    return options
