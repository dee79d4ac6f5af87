"""Leads screened by the ``dev_screen`` part: variants of the default fit, as estimator subclasses.

Each lead changes one thing of ``TokenSparseClassifier()`` and is scored on a development
split carved from the training set (``benchmarks/research/dev_screen.py``). What wins moves
into the package; what loses stays here, so that the screen's rows can be reproduced. A lead
overrides methods of the package's fit (``OVERRIDES`` names them): a whole ``stage_<name>``
that it wraps around the package's own (``super()``), or one of the steps a stage offers a
subclass (``get_training_net``, ``get_training_data``, ``run_contrastive``), which it calls and
changes; lab code (``views``: token views) runs only through them. It copies no stage, patches
nothing in the package, and what it fits is the package's own ``ClassifierModule``.

``TokenViews``     cross-entropy on training views that keep the token groups and drop other tokens
                   (attention off), drawn per batch where the batch is collated
``Contrastive``    supervised contrastive pre-finetuning of the selected entries, then the head refit
``JointContrastive``  cross-entropy plus a supervised contrastive term on the pooled features, in
                   class-balanced batches (P classes x K texts): the objective at no extra pass
``CachedNoise``    the cost mode (``min_layer`` + ``cache_frozen``) with dropout on the cached activations
                   where they enter the first trained block: the noise the frozen blocks' dropout gave
``ContrastiveViews``  ``Contrastive``, then cross-entropy on views that keep only the special tokens
``ContrastiveGroupViews``  the package's contrastive stage on views that keep the token groups

Two strategies (``register_lab_strategies`` adds them to the package's registry; the screen's
fit processes call it, nothing does on import):

``token_layers``   (``LayerFocus``) per-example Fisher in which every Linear layer's weight gradient
                   is summed over token-group positions only (token focus at every layer, not only at
                   the last hidden state); batched through hooks
``fisher_batched`` (``BatchedFisher``) the same hooks over every position (plain per-example Fisher of
                   the Linear layers, batched): what the selection costs without the focus
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sksparseft import TokenSparseClassifier
from sksparseft.fit.contrastive import class_batches, supcon_loss, train_contrastive
from sksparseft.fit.training import SparseNet, fit_head_on_features
from sksparseft.model.batching import to_batch
from sksparseft.model.inference import eval_batch_size
from sksparseft.model.layout import transformer_blocks
from sksparseft.model.mask import SparseMask
from sksparseft.strategies import register_strategy
from sksparseft.strategies.base import backbone_shapes, budget
from sksparseft.strategies.token_sparse import TokenSparse, _embedding_rows

from .views import ViewCollate, _view_features, kept_positions


# -- token-group-aware views ---------------------------------------------------------------
class TokenViews(TokenSparseClassifier):
    """Cross-entropy on views: each training batch drops ``view_drop`` of the positions a view may drop.

    ``views_keep_groups``: a view keeps the token groups and the special tokens (else only the
    special tokens). Validation, the probe and predict see whole texts.
    """

    OVERRIDES = ("get_training_net", "get_training_data")
    view_drop = 0.2
    views_keep_groups = True

    def get_training_net(self, state, extra_callbacks=()):
        # The package's net, its training batches collated into views.
        net = super().get_training_net(state, extra_callbacks)
        return net.set_params(iterator_train__collate_fn=ViewCollate(self.view_drop))

    def get_training_data(self, state):
        # The training part with what a view keeps (``ViewCollate`` takes it out of the batch).
        return {**super().get_training_data(state), "keep": kept_positions(state, groups=self.views_keep_groups)}


# -- supervised contrastive pre-finetuning ----------------------------------------------------
class Contrastive(TokenSparseClassifier):
    """The screen's first version of the contrastive stage: 16 classes x 4 texts a batch, before training."""

    OVERRIDES = ("stage_training",)
    con_epochs = 2
    con_tau = 0.05
    con_classes = 16
    con_per_class = 4

    def stage_training(self, state):
        self._contrastive(state)
        # The probe refit on the features it will finetune (LP-FT), as the package's contrastive stage does.
        fit_head_on_features(state.module, state.train_encodings, state.y_train, eval_batch_size(self.batch_size),
                             state.device, class_weight=state.class_weight, kind=state.kind)
        super().stage_training(state)

    def _contrastive(self, state):
        # The package's loop with 16 classes x 4 texts a batch.
        per_step = self.con_classes * self.con_per_class
        train_contrastive(state.module, state.train_encodings, state.y_train, epochs=self.con_epochs,
                          batch_size=per_step, learning_rate=state.learning_rate, weight_decay=self.weight_decay,
                          device=state.device, temperature=self.con_tau, per_class=self.con_per_class,
                          random_state=state.seed)


# -- the contrastive term inside the main training ---------------------------------------------
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


class SupConNet(SparseNet):
    """The package's net, its training loss plus ``supcon_weight`` x the supervised contrastive loss.

    While it trains, a forward hook on the module's head dropout (which receives the pooled
    features) keeps the pooled features of the last training forward for the loss.
    """

    def __init__(self, *args, supcon_weight=1.0, supcon_tau=0.05, **kwargs):
        super().__init__(*args, **kwargs)
        self.supcon_weight, self.supcon_tau, self.features = supcon_weight, supcon_tau, {}

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        def keep_features(dropout, args, out):
            if dropout.training:
                self.features["last"] = args[0]

        handle = self.module_.dropout.register_forward_hook(keep_features)
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        finally:
            handle.remove()
            self.features.clear()  # no graph of the last batch outlives training

    def get_loss(self, y_pred, y_true, X=None, training=False):
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if training:
            z = self.features["last"]
            loss = loss + self.supcon_weight * supcon_loss(z, y_true.to(z.device), self.supcon_tau)
        return loss


class JointContrastive(TokenSparseClassifier):
    """Cross-entropy plus ``supcon_weight`` x the supervised contrastive loss, in class-balanced batches.

    ``balanced_batches=False`` keeps the package's training batches.
    """

    OVERRIDES = ("get_training_net",)
    supcon_weight = 1.0
    con_tau = 0.05
    balanced_batches = True

    def get_training_net(self, state, extra_callbacks=()):
        # The package's net rebuilt as a SupConNet from its parameters (as sklearn's clone does).
        params = dict(super().get_training_net(state, extra_callbacks).get_params(deep=False))
        if self.balanced_batches:
            params["iterator_train"] = BalancedLoader
        params.pop("_params_to_validate", None)
        return SupConNet(supcon_weight=self.supcon_weight, supcon_tau=self.con_tau, **params)


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


class LayerFocus(TokenSparse):
    """token_sparse whose sensitivity sums each layer's weight gradient over token-group positions."""

    name = "token_layers"
    use_focus = True

    def select(self, module, ctx):
        from sksparseft.model.sensitivity import eligible_parameters

        eligible = set(eligible_parameters(module))
        scores = layer_focus_scores(module, ctx.encodings, ctx.y, ctx.focus if self.use_focus else None,
                                    self.settings["n_sensitivity_samples"], ctx.device, ctx.random_state)
        scores = {n: s for n, s in scores.items() if n in eligible}
        always = _embedding_rows(module, ctx.groups) if self.settings.get("embedding_rows") else {}
        return SparseMask.from_scores(scores, budget(module, self.settings["density"]), backbone_shapes(module), always=always)


class BatchedFisher(LayerFocus):
    """The same batched scores over every position, no embedding rows: plain per-example Fisher."""

    name = "fisher_batched"
    options = {"density": 0.01, "n_sensitivity_samples": 256, "embedding_rows": False, "min_layer": None,
               "cache_frozen": False}
    use_focus = False


# -- the cost mode with noise where the cache ends ----------------------------------------------
class CachedNoise(TokenSparseClassifier):
    """Dropout ``cache_dropout`` on the cached activations where they enter the first trained block.

    Written for BERT-style blocks (MiniLM, the screen's backbone), whose input reaches the
    block's computation through its ``attention`` submodule (the residual included): the
    dropout is a forward pre-hook there, on block ``cached_blocks`` while it trains.
    """

    OVERRIDES = ("stage_training",)
    cache_dropout = 0.1

    def stage_training(self, state):
        module, p = state.module, self.cache_dropout
        k, blocks = getattr(module, "cached_blocks", 0), transformer_blocks(module.encoder)
        if not k or k >= len(blocks):  # no cached activations enter a trained block
            return super().stage_training(state)
        entry = getattr(blocks[k], "attention", None)
        if entry is None:
            raise ValueError("CachedNoise needs BERT-style blocks with an `attention` submodule")

        def noisy(mod, args, kwargs):
            if not mod.training:
                return None
            if args:
                return (F.dropout(args[0], p, training=True),) + tuple(args[1:]), kwargs
            return args, dict(kwargs, hidden_states=F.dropout(kwargs["hidden_states"], p, training=True))

        handle = entry.register_forward_pre_hook(noisy, with_kwargs=True)
        try:
            super().stage_training(state)
        finally:
            handle.remove()


class ContrastiveViews(Contrastive, TokenViews):
    """Contrastive pre-finetuning, then cross-entropy on token views."""

    OVERRIDES = Contrastive.OVERRIDES + TokenViews.OVERRIDES
    views_keep_groups = False


class ContrastiveGroupViews(TokenSparseClassifier):
    """The contrastive stage on views that keep the token groups (and special tokens) and drop other tokens."""

    OVERRIDES = ("run_contrastive",)
    view_drop = 0.3

    def run_contrastive(self, state, **options):
        # The package's contrastive training, each batch's features taken from views of its texts.
        features = partial(_view_features, keep=kept_positions(state), view_drop=self.view_drop)
        return super().run_contrastive(state, **dict(options, features=features))


#: every lead a dev_screen variant may name
LEADS = {cls.__name__: cls for cls in (TokenViews, Contrastive, ContrastiveViews, JointContrastive, CachedNoise,
                                       ContrastiveGroupViews)}
#: the strategies the screen adds to the package's registry (``register_lab_strategies``)
LAB_STRATEGIES = {cls.name: cls for cls in (LayerFocus, BatchedFisher)}


def register_lab_strategies():
    """Make ``token_layers`` and ``fisher_batched`` available as ``strategy=`` names in this process."""
    for cls in LAB_STRATEGIES.values():
        register_strategy(cls)
