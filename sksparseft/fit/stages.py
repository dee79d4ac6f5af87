"""The stages of ``TokenSparseClassifier.fit``, in order, each a method over one :class:`FitState`.

texts -> tokens (load) -> token groups -> rejection (with ``unknown_label``) -> module and linear
probe -> selection (what the strategy trains: sensitivity and mask for token_sparse) -> contrastive
(optional) -> training -> interpolation (probe-to-finetune blend, the floor) -> thresholds
(multi-label) -> head refit -> finalize. The stages orchestrate; the snapshots a fit can end on and
the choices between them live in :mod:`sksparseft.fit.selection`. A subclass (or a benchmark)
overrides or wraps one stage, or one of the steps :class:`FitStages` names public
(``get_training_net``, ``get_training_data``, ``run_contrastive``), to change or observe it;
``fit`` itself only runs the stages in turn.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch

from ..model.backbone import default_pooling, load_backbone
from .budget import plan_epochs
from .checkpoint import fingerprint, fit_or_resume, resume_callbacks
from .contrastive import train_contrastive
from ..model.devices import autocast, broadcast_from_main, oom_advice
from .frozen import FrozenWork
from .interpolation import validation_scorer
from ..model.module import ClassifierModule
from .rejection import fit_rejector, frozen_copy
from .selection import ModelSelection
from .targets import best_f1_thresholds
from ..strategies import FitContext
from ..text.tokens import content_sequences, discover_token_groups, encode, group_positions
from ..model.inference import eval_batch_size, progress_bar, run_inference
from .training import EpochAverage, build_net, fit_head_on_features, fit_linear_probe
from ..validation import validation_split
from ..text.vocabulary import extend_embeddings, extend_tokenizer, merge_groups

#: Every stage, in the order fit runs them (``contrastive`` only with ``contrastive_epochs > 0``,
#: ``head_refit`` only with ``refit_head=True``).
STAGES = ("load", "token_groups", "rejection", "linear_probe", "selection", "contrastive", "training", "interpolation",
          "thresholds", "head_refit", "finalize")

#: The stages whose passes follow ``precision`` (bf16 autocast). The rest stay float32 on CPU:
#: the rejector, the thresholds and the refit head are fit on the features ``predict`` computes.
AUTOCAST_STAGES = ("linear_probe", "selection", "contrastive", "training", "interpolation")


class FitStages(FrozenWork):
    """Mixin of TokenSparseClassifier: one method ``stage_<name>`` per entry of :data:`STAGES`."""

    def _stages(self, state=None):
        """The stages this fit runs, in order (``rejection`` with ``unknown_label``, ``thresholds`` for multi-label)."""
        thresholds = state is not None and state.kind.multilabel
        skip = {"head_refit": not self.refit_head, "contrastive": not self.contrastive_epochs, "thresholds": not thresholds,
                "training": not self.max_epochs, "rejection": self.unknown_label is None}
        return [s for s in STAGES if not skip.get(s)]

    def _precision(self, state, stage):
        """The autocast context stage ``stage`` runs in on the CPU (``precision``; see :data:`AUTOCAST_STAGES`).

        On CUDA the module autocasts each forward pass itself (``amp``), prediction included.
        """
        cpu = state.device.type == "cpu"
        # The probe's pass fills the block cache, which the head refit reads too: float32 rows then.
        cache_filling = stage == "linear_probe" and state.strategy.settings.get("cache_frozen")
        bf16 = cpu and stage in AUTOCAST_STAGES and not cache_filling
        return autocast(state.device, state.autocast_dtype if bf16 else None)

    def _eval_batch(self):
        return eval_batch_size(self.batch_size)

    def _oom_advice(self, stage):
        return oom_advice(stage, self.batch_size, self.max_length)

    def _progress(self, desc):
        return progress_bar(self.verbose, desc)

    # -- load: backbone, tokens, class weights, held-out split ------------------------
    def stage_load(self, state):
        tokenizer, encoder, path = load_backbone(self.model)
        pooling = default_pooling(path, encoder) if self.pooling == "auto" else self.pooling
        if pooling == "pooler" and getattr(encoder, "pooler", None) is None:
            raise ValueError(f"pooling='pooler' but model={self.model!r} has no pooler layer")
        if tokenizer.pad_token is None:
            raise ValueError(f"the tokenizer of model={self.model!r} has no pad token")
        state.tokenizer, state.encoder, state.pooling = tokenizer, encoder, pooling
        encodings = encode(tokenizer, state.texts, self.max_length, warn="training texts")
        # Held-out split for early stopping; everything the method learns comes from the rest.
        state.train_idx, state.valid_idx = validation_split(state.y_enc, self.validation_fraction, state.seed)
        state.set_encodings(encodings)

    # -- token groups (and, optionally, adaptive tokenization) -----------------------
    def stage_token_groups(self, state):
        special = set(state.tokenizer.all_special_ids)
        seqs = [s for s, _ in content_sequences(state.train_encodings, special)]
        n_classes = len(state.classes)
        n_groups = self.n_token_groups if self.n_token_groups is not None else 10 * n_classes
        y_train = state.y_train
        # Tiny datasets: lower min_count so that every class can have groups.
        smallest = int(state.kind.label_counts(y_train, n_classes).min()) if len(y_train) else 2
        state.min_count = max(min(self.min_count, max(1, smallest // 2)), 1)
        state.groups = discover_token_groups(
            seqs, y_train, n_classes, n_groups=n_groups, max_ngram=self.max_ngram,
            min_count=state.min_count, decode=state.tokenizer.decode, classes=state.classes,
        )
        if self.adaptive_tokenization and state.groups:
            self._adapt_tokenizer(state)
        state.focus = group_positions(state.train_encodings, state.groups) if state.groups else None

    def _adapt_tokenizer(self, state):
        """Multi-piece groups become whole tokens: re-encode everything with them."""
        train_texts = [state.texts[i] for i in state.train_idx]
        state.tokenizer, state.added = extend_tokenizer(
            state.tokenizer, state.groups, train_texts, min_count=state.min_count, max_length=self.max_length
        )
        if state.added:
            extend_embeddings(state.encoder, state.added)
            state.groups = merge_groups(state.groups, state.added)
            state.set_encodings(encode(state.tokenizer, state.texts, self.max_length))

    # -- rejection: the frozen backbone's probe that decides what is out of scope ---------
    def stage_rejection(self, state):
        """The rejector (a frozen copy of the backbone with its linear probe) and ``unknown_threshold_``."""
        with torch.random.fork_rng(devices=[]):  # the fit's own random draws stay as without rejection
            state.rejector = frozen_copy(state.encoder, len(state.classes), state.pooling).to(state.device)
        with self._oom_advice("feature extraction"):
            features = self._frozen_features(state, state.rejector, state.encodings, what="rejector features",
                                             progress=self._progress("rejection features"))
        state.unknown_threshold = fit_rejector(
            state.rejector, features, state.y_enc, threshold=self.unknown_threshold,
            unknown=[i for i, c in enumerate(state.classes.tolist()) if c == self.unknown_label],
            class_weight=state.class_weight, sample_weight=state.encodings.get("sample_weight"), seed=state.seed,
            sync=broadcast_from_main if state.accelerator is not None else None)

    # -- the module and its head (LP-FT) ----------------------------------------------
    def stage_linear_probe(self, state):
        state.module = ClassifierModule(
            state.encoder, len(state.classes), pooling=state.pooling, dropout=self.dropout,
            # The sparse backward (no dense weight gradients) pays on CPUs; on GPUs, where small batches
            # are bound by kernel launches, the plain path measured faster (docs/gpu.md).
            amp=state.autocast_dtype is not None, sparse_backward=state.device.type == "cpu",
        ).to(state.device)
        self._cache_frozen_blocks(state)
        if self.head_init == "linear_probe":
            self._fit_probe(state, frozen=True)
            state.probe_head = {k: v.detach().clone() for k, v in state.module.head.state_dict().items()}
        else:  # the head starts at random; the floor still needs the probe
            head = copy.deepcopy(state.module.head)
            with self._oom_advice("feature extraction"):
                feats = run_inference(state.module, state.train_encodings, self._eval_batch(), state.device,
                                      what="features", progress=self._progress("features"))
            fit_linear_probe(head, feats, state.y_train, class_weight=state.class_weight,
                             sample_weight=state.train_encodings.get("sample_weight"), kind=state.kind)
            state.probe_head = {k: v.detach().clone() for k, v in head.state_dict().items()}

    def _fit_probe(self, state, frozen=False):
        """The head as a logistic regression on the module's features of the training part (LP-FT).

        ``frozen``: the module is still the pretrained backbone, whose features ``memory`` may hold.
        """
        train = state.train_encodings
        with self._oom_advice("feature extraction"):
            if frozen and self._store(state, "features") is not None:
                fit_linear_probe(state.module.head, self._frozen_features(state, state.module, train), state.y_train,
                                 class_weight=state.class_weight, sample_weight=train.get("sample_weight"),
                                 kind=state.kind)
                return
            fit_head_on_features(state.module, train, state.y_train, self._eval_batch(), state.device,
                                 class_weight=state.class_weight, progress=self._progress("features"), kind=state.kind)

    # -- selection: what the strategy trains ------------------------------------------
    def stage_selection(self, state):
        ctx = FitContext(
            encodings=state.train_encodings, y=state.y_train, groups=state.groups, focus=state.focus,
            device=state.device,
            random_state=state.seed, progress=self._progress("sensitivity"),
            sync=broadcast_from_main if state.accelerator is not None else None, kind=state.kind,
        )
        module = state.module
        with self._oom_advice("sensitivity scoring"):
            state.mask = state.strategy.setup(module, ctx)
        module.to(state.device)  # adapters created by the strategy
        # Backbone tensors trained whole or added (adapters): what save() must carry besides the delta.
        module.trained_names = [n for n, p in module.encoder.named_parameters() if p.requires_grad]
        state.n_trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        state.mask_summary = state.strategy.summary(module, state.mask)
        lr = self.learning_rate
        state.learning_rate = lr if lr is not None else state.strategy.default_learning_rate
        state.selection = self._model_selection(state)
        state.selection.record_floor(module, state.probe_head)
        state.plan = plan_epochs(len(state.train_idx), self.batch_size, self.max_epochs, self.max_steps)

    def _model_selection(self, state):
        """The fit's :class:`~sksparseft.fit.selection.ModelSelection`: its validation scorer and what trains."""
        trained = tuple(s for s, on in (("contrastive", self.contrastive_epochs), ("training", self.max_epochs)) if on)
        scorer = validation_scorer(state.valid_data, self._eval_batch(), state.device, kind=state.kind)

        def score(module):
            with self._oom_advice("validation"):  # out of memory: say what to set
                return scorer(module)

        return ModelSelection(
            score=score if scorer is not None else None,
            trained=trained, sync=broadcast_from_main if state.accelerator is not None else None,
            say=print if self.verbose else (lambda message: None))

    # -- contrastive: the selected entries trained on a supervised contrastive loss -------------
    def stage_contrastive(self, state):
        with self._oom_advice("contrastive training"):
            losses = self.run_contrastive(state)
        if state.accelerator is not None:
            # Each process's dropout drew for its own share of the batches: put every process back on one
            # random stream, or their data loaders would shuffle differently and their epochs fall out of step.
            torch.set_rng_state(broadcast_from_main(torch.get_rng_state()))
        if self.verbose and losses:
            print("contrastive loss per epoch: " + ", ".join(f"{v:.4f}" for v in losses))
        if state.selection.discard_if_diverged("contrastive", losses, state.module):
            return
        if self.head_init == "linear_probe":
            self._fit_probe(state)  # training starts from a probe on the features it will finetune
            _same_head_everywhere(state)

    def run_contrastive(self, state, **options):
        """Train ``state.module`` on the supervised contrastive loss; the mean loss of each epoch.

        A step a subclass may override (calling ``super()``): ``options`` go to
        :func:`~sksparseft.fit.contrastive.train_contrastive` (e.g. ``features``, the function that
        turns a batch into pooled features).
        """
        return train_contrastive(
            state.module, state.train_encodings, state.y_train, epochs=self.contrastive_epochs,
            max_steps=self.contrastive_max_steps, batch_size=self.batch_size, learning_rate=state.learning_rate, weight_decay=self.weight_decay,
            device=state.device, random_state=state.seed, progress=self._progress("contrastive"),
            sample_weight=state.train_encodings.get("sample_weight"),
            distributed=state.accelerator is not None and state.accelerator.num_processes > 1, **options)

    # -- training ------------------------------------------------------------------------
    def stage_training(self, state):
        self._freeze_for_training(state)
        extra, resume_state = [], None
        if self.average_epochs:
            # build_net runs it before early stopping and the checkpoint, which then holds this epoch.
            extra.append(("epoch_average", EpochAverage()))
        if self.checkpoint_path is not None:
            resume, resume_state = resume_callbacks(self.checkpoint_path, fingerprint(state))
            extra.extend(resume)
        state.net = self.get_training_net(state, extra)
        state.selection.record_start(state.module)
        with self._oom_advice("training"):
            fit_or_resume(state.net, self.get_training_data(state), state.y_train, resume_state,
                          max_epochs=state.plan["epochs"], patience=self.patience)
        net = state.net
        state.module = net.module_
        state.interrupted = bool(getattr(net, "interrupted_", False))
        if state.interrupted:
            warnings.warn(
                f"fit was interrupted after {len(net.history)} epoch(s); keeping the best weights so far",
                stacklevel=4,
            )
        state.history = [{k: v for k, v in row.items() if k != "batches"} for row in net.history]
        losses = [row.get("train_loss", 0.0) for row in state.history]
        if state.selection.discard_if_diverged("training", losses, state.module):
            return
        if self.average_epochs:
            state.selection.end_at_average(state.module, dict(net.callbacks_)["epoch_average"].average())

    def get_training_net(self, state, extra_callbacks=()):
        """The skorch net that trains ``state.module`` in the cross-entropy stage.

        A step a subclass may override (calling ``super()`` and changing the net, e.g. its
        ``iterator_train__collate_fn``); ``extra_callbacks`` are the fit's own (epoch average,
        checkpoint), which the net must keep.
        """
        lr = state.learning_rate
        return build_net(
            state.module, n_train=len(state.train_idx), lr=lr, head_lr=self.head_learning_rate or lr,
            weight_decay=self.weight_decay, max_epochs=state.plan["epochs"], batch_size=self.batch_size,
            device=state.device, class_weight=state.class_weight, valid_data=state.valid_data,
            patience=self.patience, callbacks=self.callbacks, verbose=self.verbose, extra_callbacks=extra_callbacks,
            accelerator=state.accelerator, kind=state.kind, shuffle_seed=state.seed,
        )

    def get_training_data(self, state):
        """The encodings the net trains on: the training part (a step a subclass may override).

        Extra keys ride along to the batches, where a collate function of the net may read them.
        """
        return state.train_encodings

    # -- interpolation: where on the line from the probe to the finetune; never below the floor ---------
    def stage_interpolation(self, state):
        selection, module = state.selection, state.module
        selection.choose_blend(module, state.history, self.interpolate_weights)
        selection.keep_floor_if_better(module)

    # -- thresholds: per-label decisions of a multi-label model ---------------------------
    def stage_thresholds(self, state):
        """The multi-label ``thresholds_``, chosen on texts the model has not seen.

        With ``refit_head``, the validation probabilities come from the head the refit will
        make (a logistic regression on the final features) fitted without the validation
        texts: the refit's own calibration, which the thresholds must match. The features are
        kept for the refit, which then needs no second pass.
        """
        n = len(state.classes)
        if self.multilabel_threshold != "auto":
            state.thresholds = np.full(n, float(self.multilabel_threshold))
            return
        _, y_valid = state.valid_data  # present: checked when fit started
        state.thresholds = best_f1_thresholds(self._validation_proba(state), y_valid)

    def _validation_proba(self, state):
        module = state.module
        if not self.refit_head:
            logits = run_inference(module, state.valid_data[0], self._eval_batch(), state.device)
            return state.kind.probabilities(torch.from_numpy(logits)).numpy()
        with self._oom_advice("feature extraction"):
            state.features = run_inference(module, state.encodings, self._eval_batch(), state.device, what="features")
        head = copy.deepcopy(module.head)
        train = state.train_encodings
        fit_linear_probe(head, state.features[state.train_idx], state.y_train, class_weight=state.class_weight,
                         sample_weight=train.get("sample_weight"), kind=state.kind)
        with torch.no_grad():
            feats = torch.as_tensor(state.features[state.valid_idx], device=head.weight.device)
            logits = head(feats).float().cpu()
        return state.kind.probabilities(logits).numpy()

    # -- head refit: the head as a logistic regression on every labelled text --------------
    def stage_head_refit(self, state):
        # The held-out texts included: validation has done its choosing, and on small data every text counts.
        module = state.module
        if state.features is not None:  # the thresholds stage already ran the final features
            fit_linear_probe(module.head, state.features, state.y_enc, class_weight=state.class_weight,
                             sample_weight=state.encodings.get("sample_weight"), kind=state.kind)
        else:
            with self._oom_advice("head refit"):
                fit_head_on_features(module, state.encodings, state.y_enc, self._eval_batch(), state.device,
                                     class_weight=state.class_weight, progress=self._progress("refit"),
                                     kind=state.kind)
        _same_head_everywhere(state)

    # -- finalize -----------------------------------------------------------------------
    def stage_finalize(self, state):
        # Every stage before this one (the head refit included) read the frozen blocks' cached outputs;
        # what is kept for later fits goes to ``memory`` now, and predict and export see plain blocks.
        self._keep_block_cache(state)
        state.module.clear_block_cache()
        state.module.merge_()
        state.module.eval()

    def _fitted_values(self, state):
        """The fitted attributes of this fit (see ``sksparseft.io.fitted.FITTED``)."""
        return dict(
            classes_=state.classes, token_groups_=state.groups, added_tokens_=state.added,
            strategy_=state.strategy.describe(), mask_=state.mask, mask_summary_=state.mask_summary,
            n_trainable_params_=state.n_trainable, learning_rate_=state.learning_rate, history_=state.fit_history(),
            finetune_plan_=dict(state.plan),
            pooling_=state.pooling, interrupted_=state.interrupted, finetuned_=state.selection.finetuned,
            interpolation_=state.selection.blend, interpolation_scores_=state.selection.scores,
            fit_time_=state.fit_time,
            fit_stages_=dict(state.stage_times), module_=state.module, tokenizer_=state.tokenizer,
            device_=state.device, multilabel_=state.kind.multilabel, label_names_=state.label_names,
            thresholds_=state.thresholds, unknown_threshold_=state.unknown_threshold, rejector_=state.rejector,
        )


def _same_head_everywhere(state):
    """In a data-parallel fit, process 0's head in every process (each fitted one, up to float noise)."""
    if state.accelerator is not None:
        head = state.module.head
        head.load_state_dict(broadcast_from_main({k: v.cpu() for k, v in head.state_dict().items()}))
