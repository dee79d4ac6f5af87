"""What every finetuning strategy shares: the fit context it reads and the shape it has."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from ..model.mask import SparseMask


@dataclass
class FitContext:
    """Everything a strategy may read to decide what to train (built by the estimator)."""

    encodings: dict
    y: np.ndarray
    groups: list
    focus: np.ndarray | None
    density: float
    n_sensitivity_samples: int
    device: object
    random_state: int | None
    options: dict = field(default_factory=dict)
    progress: object = None
    #: makes every process agree on the mask in data-parallel fits (process 0's wins)
    sync: object = None
    #: the target kind (sksparseft.fit.targets): its loss is what sensitivity differentiates
    kind: object = None


class Strategy:
    """A finetuning strategy: makes trainable, in a ClassifierModule, exactly what it trains.

    Subclasses set ``name``, ``default_learning_rate`` (the rate customary for the method)
    and implement :meth:`setup`. The head is always trainable and is not the strategy's concern.
    """

    name = ""
    default_learning_rate = 1e-3
    #: options this strategy reads from ``strategy_options``, with their defaults
    options = {}

    #: name fragments of the parameters this strategy adds to the backbone (adapters); empty for masks
    prefixes = ()
    #: why this strategy's models cannot be exported as a plain backbone, or None when they can
    export_error = None

    def __init__(self, **options):
        unknown = set(options) - set(self.options)
        if unknown:
            raise ValueError(
                f"strategy_options {sorted(unknown)} are not known to strategy {self.name!r}"
                f" (known: {sorted(self.options) or 'none'})"
            )
        self.settings = {**self.options, **options}
        self.validate()

    def validate(self):
        """Check the option values; runs when the strategy is made, before anything loads."""

    def _check_int(self, key, low, allow_none=False):
        value = self.settings[key]
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"strategy_options {key} must be an integer >= {low}, got {value!r}")

    def _check_bool(self, key):
        if not isinstance(self.settings[key], (bool, np.bool_)):
            raise ValueError(f"strategy_options {key} must be True or False, got {self.settings[key]!r}")

    def setup(self, module, ctx):
        """Make what this strategy trains trainable; return the backbone mask, or None for adapters."""
        raise NotImplementedError

    def frozen_blocks(self, module):
        """How many bottom transformer blocks (with the embeddings) this strategy surely never trains.

        Known before :meth:`setup`; the estimator computes them once per text when > 0.
        """
        return 0

    def rebuild(self, module):
        """Recreate, in a freshly loaded module, the structure this strategy added (values come after).

        Mask strategies add nothing: the saved delta is folded into the backbone on load.
        """

    def is_own(self, name):
        """Whether the backbone tensor ``name`` is one this strategy added."""
        return any(p in name for p in self.prefixes)

    def plain_backbone_state(self, encoder):
        """The encoder's state as a stock transformers model of its class would hold it.

        Mask strategies change existing entries only, so this is the state itself;
        adapter strategies fold their parameters in (or set ``export_error``).
        """
        if self.export_error:
            raise ValueError(self.export_error)
        return {k: v.detach().clone() for k, v in encoder.state_dict().items() if not self.is_own(k)}

    def describe(self):
        return {"strategy": self.name, **self.settings}


class MaskStrategy(Strategy):
    """A strategy that trains a subset of the existing backbone entries (no new parameters)."""

    def select(self, module, ctx):
        """The :class:`SparseMask` of backbone entries to train."""
        raise NotImplementedError

    def setup(self, module, ctx):
        mask = self.select(module, ctx)
        if ctx is not None and ctx.sync is not None:
            mask = ctx.sync(mask)
        module.set_mask(mask)
        return mask


def backbone_shapes(module):
    return {n: tuple(p.shape) for n, p in module.encoder.named_parameters()}


def budget(module, density):
    """How many backbone entries ``density`` allows."""
    return int(round(density * sum(int(np.prod(s)) for s in backbone_shapes(module).values())))


def whole_tensors(module, names):
    """A mask selecting every entry of the named backbone tensors."""
    import torch

    params = dict(module.encoder.named_parameters())
    return SparseMask({n: torch.arange(params[n].numel()) for n in names}, backbone_shapes(module))
