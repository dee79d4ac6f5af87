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

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sksparseft import TokenSparseClassifier
from sksparseft.batching import to_batch
from sksparseft.mask import SparseMask
from sksparseft.module import ClassifierModule
from sksparseft.strategies import register_strategy
from sksparseft.strategies.base import backbone_shapes, budget
from sksparseft.strategies.token_sparse import TokenSparse, _embedding_rows
from sksparseft.training import fit_head_on_features


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
def supcon_loss(z, labels, tau):
    """Supervised contrastive loss (Khosla et al. 2020) over L2-normalised features ``z``."""
    z = F.normalize(z, dim=-1)
    sim = z @ z.T / tau
    n = len(labels)
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, -1e9)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    has = pos.any(1)
    return -(log_prob.masked_fill(~pos, 0).sum(1)[has] / pos.sum(1)[has]).mean()


class Contrastive(TokenSparseClassifier):
    con_epochs = 2
    con_tau = 0.05
    con_classes = 16
    con_per_class = 4

    def stage_training(self, state):
        self._contrastive(state)
        fit_head_on_features(state.module, state.train_encodings, state.y_train, self._eval_batch(), state.device,
                             class_weight=state.class_weight)
        super().stage_training(state)

    def _contrastive(self, state):
        module, y, enc = state.module, state.y_train, state.train_encodings
        rng = np.random.default_rng(state.seed)
        by_class = [np.flatnonzero(y == c) for c in range(len(state.classes))]
        usable = [c for c, idx in enumerate(by_class) if len(idx) >= 2]
        per_step = self.con_classes * self.con_per_class
        steps = self.con_epochs * math.ceil(len(y) / per_step)
        params = [p for n, p in module.named_parameters() if p.requires_grad and not n.startswith("head.")]
        opt = torch.optim.AdamW(params, lr=state.learning_rate, weight_decay=self.weight_decay)
        module.train()
        for _ in range(steps):
            classes = rng.choice(usable, min(self.con_classes, len(usable)), replace=False)
            rows = np.concatenate([rng.choice(by_class[c], min(self.con_per_class, len(by_class[c])), replace=False)
                                   for c in classes])
            b = to_batch(enc, rows, state.device)
            z = module.features(b["input_ids"], b["attention_mask"])
            loss = supcon_loss(z, torch.as_tensor(y[rows], device=state.device), self.con_tau)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        module.eval()


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
    def __init__(self, y, batch_size, per_class, seed):
        self.y, self.per_class, self.seed = y, per_class, seed
        self.n_classes_per_batch = max(batch_size // per_class, 2)
        self.n_batches = -(-len(y) // batch_size)
        self.epoch = 0

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        by_class = {c: rng.permutation(np.flatnonzero(self.y == c)).tolist() for c in np.unique(self.y)}
        pos = {c: 0 for c in by_class}
        classes = list(by_class)
        for _ in range(self.n_batches):
            batch = []
            for c in rng.choice(classes, min(self.n_classes_per_batch, len(classes)), replace=False):
                idx = by_class[c]
                for _ in range(min(self.per_class, len(idx))):
                    batch.append(idx[pos[c] % len(idx)])
                    pos[c] += 1
            yield batch

    def __len__(self):
        return self.n_batches


class JointContrastive(TokenSparseClassifier):
    supcon_weight = 1.0
    con_tau = 0.05

    def stage_linear_probe(self, state):
        super().stage_linear_probe(state)
        state.module.__class__ = _FeatureModule

    def stage_training(self, state):
        import sksparseft.fit_stages as fit_stages
        from sksparseft.training import SparseNet

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

        fit_stages.build_net = build
        try:
            super().stage_training(state)
        finally:
            fit_stages.build_net = plain
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
        from sksparseft.sensitivity import eligible_parameters

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
        import sksparseft.block_cache as block_cache

        p, plain = self.cache_dropout, block_cache._replace_hidden

        def noisy(hidden):
            def hook(module, args, kwargs):
                h = F.dropout(hidden, p, training=module.training)
                return ((h,) + tuple(args[1:]), kwargs) if args else (args, dict(kwargs, hidden_states=h))
            return hook

        block_cache._replace_hidden = noisy
        try:
            super().stage_training(state)
        finally:
            block_cache._replace_hidden = plain


class ContrastiveViews(Contrastive, TokenViews):
    """Contrastive pre-finetuning, then cross-entropy on token views."""

    views_keep_groups = False


class ContrastiveGroupViews(TokenSparseClassifier):
    """The contrastive stage on views that keep the token groups (and special tokens) and drop other tokens."""

    view_drop = 0.3

    def stage_contrastive(self, state):
        import sksparseft.fit_stages as fit_stages

        keep, plain, drop = _kept_positions(state), fit_stages.train_contrastive, self.view_drop
        fit_stages.train_contrastive = lambda *a, **k: plain(*a, keep=keep, view_drop=drop, **k)
        try:
            super().stage_contrastive(state)
        finally:
            fit_stages.train_contrastive = plain


#: every lead a dev_screen variant may name
LEADS = {cls.__name__: cls for cls in (TokenViews, Contrastive, ContrastiveViews, JointContrastive, CachedNoise,
                                       ContrastiveGroupViews)}
