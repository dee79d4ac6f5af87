"""The frozen backbone's work in a fit: blocks that never train run once per text, and with the
estimator's ``memory`` what the frozen backbone computed for a text is kept for the next fit.

A mixin of :class:`~sksparseft.fit.stages.FitStages`, for the stages that read frozen outputs.
"""

from __future__ import annotations

import hashlib

from ..model.frozen_store import (FrozenStore, backbone_namespace, fill_block_cache, frozen_features,
                                  keep_block_cache, memory_folder)
from ..model.inference import eval_batch_size


class FrozenWork:
    """Frozen outputs within a fit (the block cache) and across fits (``memory``)."""

    # Activations of frozen blocks kept per text: at most this many bytes.
    _BLOCK_CACHE_BYTES = 2**30

    def _store(self, state, what):
        """The store of ``memory`` for ``what`` this backbone computes (None without ``memory``)."""
        folder = memory_folder(self.memory)
        if folder is None:
            return None
        if state.backbone_key is None:  # the pretrained weights (and any added tokens), before anything trains
            precision = "" if state.autocast_dtype is None else f" autocast {state.autocast_dtype}"
            state.backbone_key = backbone_namespace(state.encoder, state.device.type + precision)
        detail = f"{what} pooled {state.pooling}" if what.endswith("features") else what
        return FrozenStore(folder, f"{state.backbone_key}-{hashlib.sha256(detail.encode()).hexdigest()[:12]}")

    def _frozen_features(self, state, module, encodings, progress=None, what="features"):
        """The frozen backbone's pooled features of ``encodings``: from ``memory`` where it has them.

        The rejector's are kept apart from the probe's (``what``): each stage then reads rows computed
        in its own batches, so a fit with an empty memory is exactly a fit without one.
        """
        return frozen_features(module, encodings, eval_batch_size(self.batch_size), state.device,
                               store=self._store(state, what),
                               progress=progress)

    def _keep_block_cache(self, state):
        """Put the frozen blocks' outputs this fit computed into ``memory`` (before the cache is cleared)."""
        if state.prefix_store is not None:
            keep_block_cache(state.module, *state.prefix_store)

    def _cache_frozen_blocks(self, state):
        """Run the blocks the strategy never trains once per text (all fit passes reuse them)."""
        module = state.module
        k = state.strategy.frozen_blocks(module)
        if not k:
            return
        size = int(state.encodings["attention_mask"].sum()) * module.encoder.config.hidden_size * 4
        if size > self._BLOCK_CACHE_BYTES:
            if self.verbose:
                print(f"not caching the {k} frozen blocks: {size / 2**20:.0f} MiB of activations is over the "
                      f"{self._BLOCK_CACHE_BYTES / 2**20:.0f} MiB limit")
            return
        module.cache_frozen_blocks(k)
        store = self._store(state, f"input of block {k}")
        if store is not None:
            state.prefix_store = (store, fill_block_cache(module, store, state.encodings, state.device))
