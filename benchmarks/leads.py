"""Leads screened by the ``dev_screen`` part: variants of the default fit, as estimator subclasses.

Each lead changes one thing of ``TokenSparseClassifier()`` and is scored on a development
split carved from the training set (``benchmarks/dev_screen.py``). What wins moves into the
package; what loses stays here, so that the screen's rows can be reproduced.

``TokenViews``     training views that keep the token groups and drop other tokens (attention off)
``Contrastive``    supervised contrastive pre-finetuning of the selected entries, then the head refit
``JointContrastive``  cross-entropy plus a supervised contrastive term on the pooled features, in
                   class-balanced batches (P classes x K texts): the objective at no extra pass
``LayerFocus``     strategy ``token_layers``: per-example Fisher in which every Linear layer's weight
                   gradient is summed over token-group positions only (token focus at every layer,
                   not only at the last hidden state); batched through hooks
``CachedNoise``    the cost mode (``min_layer`` + ``cache_frozen``) with dropout on the cached activations
                   where they enter the first trained block: the noise the frozen blocks' dropout gave
``BatchedFisher``  strategy ``fisher_batched``: the same hooks over every position (plain per-example
                   Fisher of the Linear layers, batched): what the selection costs without the focus
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sksparseft import TokenSparseClassifier
from sksparseft.model.batching import to_batch
from sksparseft.fit.contrastive import class_batches, supcon_loss, train_contrastive
from sksparseft.model.mask import SparseMask
from sksparseft.model.module import ClassifierModule
from sksparseft.strategies import register_strategy
from sksparseft.strategies.base import backbone_shapes, budget
from sksparseft.strategies.token_sparse import TokenSparse, _embedding_rows


# -- token-group-aware views ---------------------------------------------------------------
class _ViewModule(ClassifierModule):
    """ClassifierModule whose training forward drops (masks out) non-kept tokens at rate ``view_drop``."""

    view_drop = 0.0

    def forward(self, input_ids, attention_mask, focus=None, keep=None):
        if self.training and keep is not None and self.view_drop > 0:
            drop = (torch.rand(attention_mask.shape, device=attention_mask.device) < self.view_drop) & (keep == 0)
            attention_mask = attention_mask * (~drop).to(attention_mask.dtype)
        return super().forward(input_ids, attention_mask, focus)


def _kept_positions(state):
    """Token-group positions and special tokens: what a view never drops."""
    enc = state.train_encodings
    special = np.isin(enc["input_ids"], list(state.tokenizer.all_special_ids))
    keep = special.astype(np.int64)
    if state.focus is not None:
        keep |= state.focus.astype(np.int64)
    return keep


class TokenViews(TokenSparseClassifier):
    view_drop = 0.2
    views_keep_groups = True

    def stage_linear_probe(self, state):
        super().stage_linear_probe(state)
        state.module.__class__ = _ViewModule
        state.module.view_drop = self.view_drop

    def stage_training(self, state):
        keep = _kept_positions(state)
        if not self.views_keep_groups:
            special = np.isin(state.train_encodings["input_ids"], list(state.tokenizer.all_special_ids))
            keep = special.astype(np.int64)
        plain = state.train_encodings
        state.train_encodings = {**plain, "keep": keep}
        try:
            super().stage_training(state)
        finally:
            state.train_encodings = plain
        state.module.__class__ = ClassifierModule


# -- supervised contrastive pre-finetuning ----------------------------------------------------
class Contrastive(TokenSparseClassifier):
    con_epochs = 2
    con_tau = 0.05
    con_classes = 16
    con_per_class = 4

    def stage_training(self, state):
        self._contrastive(state)
        self._fit_probe(state)
        super().stage_training(state)

    def _contrastive(self, state):
        # The package's loop with 16 classes x 4 texts a batch (the screen's first version of the stage).
        per_step = self.con_classes * self.con_per_class
        train_contrastive(state.module, state.train_encodings, state.y_train, epochs=self.con_epochs,
                          batch_size=per_step, learning_rate=state.learning_rate, weight_decay=self.weight_decay,
                          device=state.device, temperature=self.con_tau, per_class=self.con_per_class,
                          random_state=state.seed)


# -- the contrastive term inside the main training ---------------------------------------------
class _FeatureModule(ClassifierModule):
    """Keeps the pooled features of the last training forward for the loss."""

    def forward(self, input_ids, attention_mask, focus=None):
        feats = self.features(input_ids, attention_mask, focus)
        if self.training:
            self._last_features = feats
        return self.head(self.dropout(feats))


class BalancedLoader(torch.utils.data.DataLoader):
    """Batches of ``per_class`` texts from each of ``batch_size // per_class`` random classes."""

    per_class = 4

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, generator=None, **kwargs):
        y = np.asarray(dataset.y)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
        super().__init__(dataset, batch_sampler=_BalancedBatches(y, batch_size, self.per_class, seed), **kwargs)


class _BalancedBatches(torch.utils.data.Sampler):
    """The package's class-balanced batches (``class_batches``), drawn anew each epoch."""

    def __init__(self, y, batch_size, per_class, seed):
        self.y, self.per_class, self.seed = y, per_class, seed
        self.n_classes_per_batch = max(batch_size // per_class, 2)
        self.epoch = 0

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        for rows in class_batches(self.y, self.n_classes_per_batch, self.per_class, rng):
            yield rows.tolist()

    def __len__(self):
        return len(class_batches(self.y, self.n_classes_per_batch, self.per_class, np.random.default_rng(self.seed)))


class JointContrastive(TokenSparseClassifier):
    supcon_weight = 1.0
    con_tau = 0.05

    def stage_linear_probe(self, state):
        super().stage_linear_probe(state)
        state.module.__class__ = _FeatureModule

    def stage_training(self, state):
        from sksparseft import fit_stages
        from sksparseft.fit.training import SparseNet

        weight, tau, plain = self.supcon_weight, self.con_tau, fit_stages.build_net

        class SupConNet(SparseNet):
            def get_loss(self, y_pred, y_true, X=None, training=False):
                loss = super().get_loss(y_pred, y_true, X=X, training=training)
                if training:
                    z = self.module_._last_features
                    loss = loss + weight * supcon_loss(z, y_true.to(z.device), tau)
                return loss

        def build(*args, **kwargs):
            net = plain(*args, **kwargs)
            net.__class__ = SupConNet
            net.set_params(iterator_train=BalancedLoader)
            return net

        with mock.patch.object(fit_stages, "build_net", build):
            super().stage_training(state)
        state.module.__class__ = ClassifierModule


# -- token focus at every layer: per-example Fisher through hooks ------------------------------
def layer_focus_scores(module, encodings, y, focus, n_samples, device, random_state, batch_size=16):
    """Per-example squared gradients of every Linear weight and bias, each summed over ``focus`` positions.

    ``focus`` (0/1 per position) None: every real position (plain per-example Fisher).
    """
    rng = np.random.default_rng(random_state)
    pool_idx = np.arange(len(y))
    if focus is not None:
        covered = np.flatnonzero(focus.any(axis=1))
        pool_idx = covered if covered.size else pool_idx
        focus = focus if covered.size else None
    take = np.sort(rng.choice(pool_idx, size=min(n_samples, pool_idx.size), replace=False))
    linears = {f"{n}.weight": m for n, m in module.encoder.named_modules() if type(m) is nn.Linear}
    scores = {n: torch.zeros_like(m.weight, dtype=torch.float32) for n, m in linears.items()}
    scores.update({n[:-len("weight")] + "bias": torch.zeros_like(m.bias, dtype=torch.float32)
                   for n, m in linears.items() if m.bias is not None})
    saved, handles = {}, []

    def capture(name):
        def hook(mod, args, out):
            x = args[0].detach()
            out.register_hook(lambda g: saved.__setitem__(name, (x, g.detach())))
        return hook

    for n, m in linears.items():
        handles.append(m.register_forward_hook(capture(n)))
    was_training = module.training
    module.eval()
    head = module.head.weight
    head.requires_grad_(True)  # something must need a gradient for the hooks to fire
    try:
        for start in range(0, len(take), batch_size):
            rows = take[start:start + batch_size]
            b = to_batch(encodings, rows, device, focus=focus)
            m = (b["focus"] if focus is not None else b["attention_mask"]).float()
            with torch.enable_grad():
                emb = module.encoder.get_input_embeddings()
                h = emb.register_forward_hook(lambda mod, a, out: out.requires_grad_(True))
                try:
                    logits = module(b["input_ids"], b["attention_mask"])
                finally:
                    h.remove()
                # Sum of per-example losses: each example's activations get its own loss's gradient.
                F.cross_entropy(logits, torch.as_tensor(y[rows], device=device), reduction="sum").backward()
            for n, (x, g) in saved.items():
                gm = g * m.unsqueeze(-1)
                scores[n].add_(torch.einsum("bto,bti->boi", gm, x).pow(2).sum(0))
                bias = n[:-len("weight")] + "bias"
                if bias in scores:
                    scores[bias].add_(gm.sum(1).pow(2).sum(0))
            saved.clear()
    finally:
        for h in handles:
            h.remove()
        head.grad = None
        module.train(was_training)
    return {n: s.cpu() for n, s in scores.items()}


@register_strategy
class LayerFocus(TokenSparse):
    """token_sparse whose sensitivity sums each layer's weight gradient over token-group positions."""

    name = "token_layers"
    use_focus = True

    def select(self, module, ctx):
        from sksparseft.model.sensitivity import eligible_parameters

        eligible = set(eligible_parameters(module))
        scores = layer_focus_scores(module, ctx.encodings, ctx.y, ctx.focus if self.use_focus else None,
                                    ctx.n_sensitivity_samples, ctx.device, ctx.random_state)
        scores = {n: s for n, s in scores.items() if n in eligible}
        always = _embedding_rows(module, ctx.groups) if self.settings.get("embedding_rows") else {}
        return SparseMask.from_scores(scores, budget(module, ctx.density), backbone_shapes(module), always=always)


@register_strategy
class BatchedFisher(LayerFocus):
    """The same batched scores over every position, no embedding rows: plain per-example Fisher."""

    name = "fisher_batched"
    options = {"embedding_rows": False, "min_layer": None, "cache_frozen": False}
    use_focus = False


# -- the cost mode with noise where the cache ends ----------------------------------------------
class CachedNoise(TokenSparseClassifier):
    cache_dropout = 0.1

    def stage_training(self, state):
        from sksparseft import block_cache

        p = self.cache_dropout

        def noisy(hidden):
            def hook(module, args, kwargs):
                h = F.dropout(hidden, p, training=module.training)
                return ((h,) + tuple(args[1:]), kwargs) if args else (args, dict(kwargs, hidden_states=h))
            return hook

        with mock.patch.object(block_cache, "_replace_hidden", noisy):
            super().stage_training(state)


class ContrastiveViews(Contrastive, TokenViews):
    """Contrastive pre-finetuning, then cross-entropy on token views."""

    views_keep_groups = False


class ContrastiveGroupViews(TokenSparseClassifier):
    """The contrastive stage on views that keep the token groups (and special tokens) and drop other tokens."""

    view_drop = 0.3

    def stage_contrastive(self, state):
        from sksparseft import fit_stages

        keep, plain, drop = _kept_positions(state), fit_stages.train_contrastive, self.view_drop
        with mock.patch.object(fit_stages, "train_contrastive",
                               lambda *a, **k: plain(*a, keep=keep, view_drop=drop, **k)):
            super().stage_contrastive(state)


#: every lead a dev_screen variant may name
LEADS = {cls.__name__: cls for cls in (TokenViews, Contrastive, ContrastiveViews, JointContrastive, CachedNoise,
                                       ContrastiveGroupViews)}

