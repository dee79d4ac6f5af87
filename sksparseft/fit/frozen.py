"""The frozen backbone's work in a fit: blocks that never train run once per text, and with the
estimator's ``memory`` what the frozen backbone computed for a text is kept for the next fit.

A mixin of :class:`~sksparseft.fit.stages.FitStages`, for the stages that read frozen outputs.
"""

from __future__ import annotations

import hashlib

import torch

from ..model.frozen_store import (FrozenStore, backbone_namespace, fill_block_cache, frozen_features,
                                  keep_block_cache, memory_folder)
from ..model.inference import eval_batch_size, run_inference


class FrozenWork:
    """Frozen outputs within a fit (the block cache) and across fits (``memory``)."""

    # Activations of frozen blocks kept per text: at most this many bytes.
    _BLOCK_CACHE_BYTES = 2**30

    def _store(self, state, what, how=""):
        """The store of ``memory`` for ``what`` this backbone computes (None without ``memory``); ``how``: the path."""
        folder = memory_folder(self.memory)
        if folder is None:
            return None
        if state.backbone_key is None:  # the pretrained weights (and any added tokens), before anything trains
            precision = "" if state.autocast_dtype is None else f" autocast {state.autocast_dtype}"
            state.backbone_key = backbone_namespace(state.encoder, state.device.type + precision)
        detail = (f"{what} pooled {state.pooling}" if what.endswith("features") else what) + how
        return FrozenStore(folder, f"{state.backbone_key}-{hashlib.sha256(detail.encode()).hexdigest()[:12]}")

    def _frozen_features(self, state, module, encodings, progress=None, what="features"):
        """The frozen backbone's pooled features of ``encodings``: from ``memory`` where it has them.

        The rejector's are kept apart from the probe's (``what``): each stage then reads rows computed
        in its own batches, so a fit with an empty memory is exactly a fit without one.
        """
        k = getattr(module, "cached_blocks", 0)
        # Features read through k cached blocks sum in another order than through k' blocks: float noise
        # apart. Kept apart, a fit reads only rows it would have computed itself, bit for bit.
        store = self._store(state, what, f" through {k} cached blocks" if k else "")
        return frozen_features(module, encodings, eval_batch_size(self.batch_size), state.device, store=store,
                               progress=progress)

    def _keep_block_cache(self, state):
        """Put the frozen blocks' outputs this fit computed into ``memory`` (before the cache is cleared)."""
        if state.prefix_store is not None:
            keep_block_cache(state.module, *state.prefix_store)

    def _cache_frozen_blocks(self, state):
        """Run the blocks the strategy never trains once per text (all fit passes reuse them)."""
        module = state.module
        state.strategy.training_frozen_blocks(module)  # a wrong ce_min_layer fails before any pass
        k = state.strategy.frozen_blocks(module)
        if not k or not self._cache_fits(state, k):
            return
        module.cache_frozen_blocks(k)
        store = self._store(state, f"input of block {k}")
        if store is not None:
            state.prefix_store = (store, fill_block_cache(module, store, state.encodings, state.device))

    def _cache_fits(self, state, k):
        """Whether the inputs of block ``k`` for every text fit in :attr:`_BLOCK_CACHE_BYTES` (float32)."""
        size = int(state.encodings["attention_mask"].sum()) * state.module.encoder.config.hidden_size * 4
        if size > self._BLOCK_CACHE_BYTES:
            if self.verbose:
                print(f"not caching the {k} frozen blocks: {size / 2**20:.0f} MiB of activations is over the "
                      f"{self._BLOCK_CACHE_BYTES / 2**20:.0f} MiB limit")
            return False
        return True

    def _freeze_for_training(self, state):
        """``ce_min_layer``: the blocks below it stop training and, from here on, run once per text.

        Their delta keeps what the contrastive stage gave it; every later pass of the fit (the
        cross-entropy epochs, validation, the interpolation, the head refit) starts at block ``k``.
        The rows come from a pass in eval mode without the stage's autocast: the arithmetic ``predict``
        does (float32 on the CPU; on CUDA the module's own bf16 autocast, as in ``predict``).
        """
        module = state.module
        k = state.strategy.training_frozen_blocks(module)
        if not k or k <= getattr(module, "cached_blocks", 0):
            return
        module.freeze_below(k)
        # What the pretrained prefix computed goes to ``memory`` now: the new rows hold trained blocks.
        self._keep_block_cache(state)
        state.prefix_store = None
        module.clear_block_cache()
        if not self._cache_fits(state, k):
            return  # still frozen: the backward stops at block k
        module.cache_frozen_blocks(k)
        with torch.autocast(state.device.type, enabled=False):
            run_inference(module, state.encodings, eval_batch_size(self.batch_size), state.device, what="features")
