"""What every finetuning strategy shares: the fit context it reads and the shape it has."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..model.mask import SparseMask
from .options import NoOptions, checked_options


@dataclass
class FitContext:
    """Everything a strategy may read to decide what to train (built by the estimator)."""

    encodings: dict
    y: np.ndarray
    groups: list
    focus: np.ndarray | None
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

    Subclasses set ``name``, ``trains`` (one line: what it trains), ``default_learning_rate``
    (the rate customary for the method), ``options`` (a frozen dataclass of
    :func:`~sksparseft.strategies.options.option` fields) and implement :meth:`setup`. The
    head is always trainable and is not the strategy's concern.
    """

    name = ""
    #: one line: what the strategy trains (docs/strategies.md's table shows it)
    trains = ""
    default_learning_rate = 1e-3
    #: the options it reads from ``strategy_options``: a frozen dataclass whose fields are
    #: ``option(default, doc, ...)`` with their type; a plain ``{name: default}`` dict still works (unchecked)
    options = NoOptions

    #: name fragments of the parameters this strategy adds to the backbone (adapters); empty for masks
    prefixes = ()
    #: why this strategy's models cannot be exported as a plain backbone, or None when they can
    export_error = None

    def bf16_on_cpu(self):
        """Whether ``precision="auto"`` trains this strategy in bf16 on a CPU with native bf16.

        Only where a screen measured it as accurate in bf16 as in float32 (docs/research.md,
        "Does bf16 pay on the CPU?"); ``precision="bfloat16"`` asks for it anywhere.
        """
        return False

    def __init__(self, **options):
        #: every option's value, the defaults filled in (``describe()`` and saved files hold it)
        self.settings = checked_options(type(self), options)
        self.validate()

    def validate(self):
        """Check what the options' types and ranges cannot say (e.g. two options together); runs at creation."""

    def setup(self, module, ctx):
        """Make what this strategy trains trainable; return the backbone mask, or None for adapters."""
        raise NotImplementedError

    def frozen_blocks(self, module):
        """How many bottom transformer blocks (with the embeddings) this strategy surely never trains.

        Known before :meth:`setup`; the estimator computes them once per text when > 0.
        """
        return 0

    def training_frozen_blocks(self, module):
        """How many bottom blocks the cross-entropy epochs leave as they are (run once per text); 0: none."""
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

    def summary(self, module, mask):
        """``mask_summary_``: what a fit trained (an adapter strategy: the parameters it added)."""
        if mask is not None:
            return mask.summary()
        n_trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        head = sum(p.numel() for p in module.head.parameters())
        frozen = sum(p.numel() for p in module.encoder.parameters() if not p.requires_grad)
        return {"selected": 0, "total": frozen, "density": 0.0, "added_parameters": n_trainable - head}

    def describe(self):
        return {"strategy": self.name, **self.settings}


class MaskStrategy(Strategy):
    """A strategy that trains a subset of the existing backbone entries (no new parameters)."""

    def frozen_blocks(self, module):
        """With the options ``min_layer`` and ``cache_frozen``: the blocks below ``min_layer``."""
        return cached_prefix(module, self.settings.get("min_layer"), self.settings.get("cache_frozen"))

    def validate(self):
        first, then = self.settings.get("min_layer"), self.settings.get("ce_min_layer")
        if first is not None and then is not None and then <= first:
            raise ValueError(f"strategy_options ce_min_layer={then} must be above min_layer={first}: below "
                             "min_layer nothing trains in any stage")

    def training_frozen_blocks(self, module):
        """How many bottom blocks the cross-entropy epochs leave as they are (with every tensor outside the blocks).

        ``ce_min_layer``: what lies below it trained in the contrastive stage only; 0 without it.
        """
        from ..model.layout import transformer_blocks

        k = self.settings.get("ce_min_layer")
        if k is None:
            return 0
        blocks = transformer_blocks(module.encoder)
        n = 0 if blocks is None else len(blocks)
        if int(k) >= n:
            raise ValueError(f"strategy_options ce_min_layer={k} leaves no transformer block to train in the "
                             f"cross-entropy epochs (the backbone has {n} blocks)")
        return int(k)

    def select(self, module, ctx):
        """The :class:`SparseMask` of backbone entries to train."""
        raise NotImplementedError

    def setup(self, module, ctx):
        mask = self.select(module, ctx)
        if ctx is not None and ctx.sync is not None:
            mask = ctx.sync(mask)
        module.set_mask(mask)
        return mask


def cached_prefix(module, first_trained, cache):
    """How many bottom blocks to run once per text: those below ``first_trained`` when ``cache`` is on.

    0 when nothing below can be cached (no ``cache``, no blocks, or ``first_trained`` past the
    last block: ``select`` says what is wrong with it).
    """
    from ..model.layout import transformer_blocks

    if not first_trained or not cache:
        return 0
    blocks = transformer_blocks(module.encoder)
    if blocks is None or int(first_trained) >= len(blocks):
        return 0
    return int(first_trained)


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
