"""The stages of ``TokenSparseTagger.fit``, in order, each a method over one :class:`TaggerState`.

words and tags -> pieces (load) -> token groups (the labelled spans) -> module and frozen probe ->
selection (what the strategy trains: the classifier's strategies, their sensitivity differentiating
the token loss, focused on slot pieces for ``token_sparse``) -> training -> interpolation (probe
to finetune, WiSE-FT, never below the frozen probe) -> head refit (optional) -> finalize. The
model code, the strategies, the epoch budget, the snapshots and the choices between them
(:class:`~sksparseft.fit.selection.ModelSelection`) are the classifier's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import time
import contextlib

import numpy as np
import torch

from ..fit.budget import plan_epochs
from ..fit.selection import ModelSelection
from ..fit.training import fit_linear_probe
from ..model.backbone import load_backbone
from ..model.devices import autocast, oom_advice
from ..model.inference import eval_batch_size, progress_bar
from ..strategies import FitContext
from ..text.tokens import discover_token_groups
from ..validation import validation_split
from .data import IGNORE, OUTSIDE, align, as_iob2, rows_of, span_type, targets
from .decoding import decode
from .module import TaggerModule
from .targets import TokenTags, intent_accuracy_score, slot_f1_score
from .training import batch_of, train_tagger

STAGES = ("load", "token_groups", "linear_probe", "selection", "training", "interpolation", "head_refit", "finalize")
#: the stages whose passes follow ``precision`` (bf16 autocast on a CPU that has it)
AUTOCAST_STAGES = ("linear_probe", "selection", "training", "interpolation")


@dataclass
class TaggerState:
    """What one call of ``TokenSparseTagger.fit`` carries from stage to stage."""

    words: list
    tags: list
    intents: list | None
    tag_classes: np.ndarray
    intent_classes: np.ndarray | None
    scheme: str
    device: object
    seed: int
    strategy: object
    autocast_dtype: object = None
    kind: TokenTags = field(default_factory=TokenTags)
    tokenizer: object = None
    encoder: object = None
    encodings: dict | None = None
    train_idx: np.ndarray | None = None
    valid_idx: np.ndarray | None = None
    groups: list = field(default_factory=list)
    focus: np.ndarray | None = None
    module: object = None
    probe_heads: dict | None = None
    mask: object = None
    mask_summary: dict | None = None
    n_trainable: int = 0
    learning_rate: float | None = None
    plan: dict = field(default_factory=dict)
    selection: ModelSelection = field(default_factory=ModelSelection)
    history: list = field(default_factory=list)
    interrupted: bool = False
    stage_times: dict = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @property
    def train(self):
        return rows_of(self.encodings, self.train_idx)

    @property
    def valid(self):
        return None if self.valid_idx is None else rows_of(self.encodings, self.valid_idx)

    @contextlib.contextmanager
    def timed(self, name):
        begin = time.perf_counter()
        try:
            yield
        finally:
            self.stage_times[name] = time.perf_counter() - begin


@torch.inference_mode()
def token_outputs(module, encodings, batch_size, device, fill, progress=None):
    """Per text, tag probabilities ``(n_words, tags)`` read at each word's first piece; intent probabilities or None.

    A word with no piece of its own (cut by ``max_length``, or dropped by the tokenizer) gets ``fill``.
    Also, per text, which words had a piece (a boolean array).
    """
    n = len(encodings["input_ids"])
    tags, seen, intent_out = [None] * n, [None] * n, None
    was = module.training
    module.eval()
    order = np.argsort(-encodings["attention_mask"].sum(axis=1), kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    try:
        for rows in progress(batches) if progress else batches:
            b = batch_of(encodings, rows, device)
            out = module(b["input_ids"], b["attention_mask"])
            tokens, intent = out if isinstance(out, tuple) else (out, None)
            proba = torch.softmax(tokens.double(), dim=-1).cpu().numpy()
            first = encodings["word_index"][rows, :proba.shape[1]]
            for k, r in enumerate(rows):
                at = first[k] >= 0
                full = np.tile(fill, (int(encodings["n_words"][r]), 1))
                full[first[k][at]] = proba[k][at]
                mask = np.zeros(len(full), dtype=bool)
                mask[first[k][at]] = True
                tags[r], seen[r] = full, mask
            if intent is not None:
                if intent_out is None:
                    intent_out = np.empty((n, intent.shape[1]))
                intent_out[rows] = torch.softmax(intent.double(), dim=-1).cpu().numpy()
    finally:
        module.train(was)
    return tags, intent_out, seen


def fill_row(classes):
    """The probabilities of a word without a piece: all on "O" (or on the first tag without an "O")."""
    row = np.zeros(len(classes))
    where = np.flatnonzero(np.asarray(classes) == OUTSIDE)
    row[where[0] if where.size else 0] = 1.0
    return row


@torch.inference_mode()
def frozen_states(module, encodings, batch_size, device, progress=None):
    """The token states at every tagged piece ``(n_pieces, hidden)`` with their tag ids, and each text's mean state."""
    feats, labels, pooled = [], [], np.empty((len(encodings["input_ids"]), module.head.in_features), dtype=np.float32)
    was = module.training
    module.eval()
    batches = [np.arange(i, min(i + batch_size, len(encodings["input_ids"])))
               for i in range(0, len(encodings["input_ids"]), batch_size)]
    try:
        for rows in progress(batches) if progress else batches:
            b = batch_of(encodings, rows, device)
            hidden = module.token_states(b["input_ids"], b["attention_mask"])
            lab = b["target"][:, 1:]
            keep = lab != IGNORE
            feats.append(hidden[keep].float().cpu().numpy())
            labels.append(lab[keep].cpu().numpy())
            mask = b["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled[rows] = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)).float().cpu().numpy()
    finally:
        module.train(was)
    return np.concatenate(feats), np.concatenate(labels), pooled


class TaggerStages:
    """Mixin of TokenSparseTagger: one method ``stage_<name>`` per entry of :data:`STAGES`."""

    def _stages(self):
        skip = {"training": not self.max_epochs, "head_refit": not self.refit_head}
        return [s for s in STAGES if not skip.get(s)]

    def _precision(self, state, stage):
        bf16 = state.device.type == "cpu" and stage in AUTOCAST_STAGES
        return autocast(state.device, state.autocast_dtype if bf16 else None)

    def _progress(self, desc):
        return progress_bar(self.verbose, desc)

    def _oom_advice(self, stage):
        return oom_advice(stage, self.batch_size, self.max_length)

    # -- load: backbone, pieces, held-out split ----------------------------------------------
    def stage_load(self, state):
        tokenizer, encoder, path = load_backbone(self.model)
        if tokenizer.pad_token is None:
            raise ValueError(f"the tokenizer of model={self.model!r} has no pad token")
        tokenizer = words_tokenizer(tokenizer, path)
        state.tokenizer, state.encoder = tokenizer, encoder
        tag_ids = {t: i for i, t in enumerate(state.tag_classes.tolist())}
        intent_ids = None
        if state.intents is not None:
            index = {c: i for i, c in enumerate(state.intent_classes.tolist())}
            intent_ids = [index[c] for c in state.intents]
        state.encodings = align(tokenizer, state.words, self.max_length, [[tag_ids[t] for t in row] for row in state.tags],
                                intent_ids, warn="training texts")
        # Stratified by intent in the joint mode (every intent seen in both parts where it can be); the
        # intents of a single text share one stratum, or the split could not be stratified at all.
        strata = np.zeros(len(state.words), dtype=np.int64)
        if intent_ids is not None:
            counts = np.bincount(intent_ids)
            strata = np.where(counts[intent_ids] >= 2, np.asarray(intent_ids) + 1, 0)
            strata = np.unique(strata, return_inverse=True)[1]
        state.train_idx, state.valid_idx = validation_split(strata, self.validation_fraction, state.seed)

    # -- token groups: the labelled spans, and the pieces they cover -----------------------------
    def stage_token_groups(self, state):
        """Token groups of each slot type (subword n-grams inside its spans), and the slot pieces as the focus."""
        enc, types = state.encodings, self._slot_types(state)
        focus = np.zeros_like(enc["input_ids"])
        seqs, labels = [], []
        for r in state.train_idx:
            tags = state.tags[r]
            words = enc["piece_word"][r]
            slot = np.array([w >= 0 and span_type(tags[w]) is not None for w in words])
            focus[r] = slot
            for span, kind in _spans(tags, state.scheme):
                pieces = [p for p, w in enumerate(words) if w in span]
                if pieces:
                    seqs.append(enc["input_ids"][r, pieces].tolist())
                    labels.append(types.index(kind))
        state.focus = focus
        if not seqs:
            return
        n_groups = self.n_token_groups if self.n_token_groups is not None else 10 * len(types)
        # Rare slot types: min_count drops to half the rarest type's spans, so that every type can have groups.
        counts = np.bincount(labels, minlength=len(types))
        min_count = max(min(self.min_count, max(1, int(counts[counts > 0].min()) // 2)), 1)
        state.groups = discover_token_groups(seqs, np.asarray(labels), len(types), n_groups=n_groups,
                                             max_ngram=self.max_ngram, min_count=min_count,
                                             decode=state.tokenizer.decode, classes=np.asarray(types, dtype=object))

    @staticmethod
    def _slot_types(state):
        return sorted({span_type(t) for t in state.tag_classes.tolist()} - {None})

    # -- the module and its frozen probe (LP-FT, and the floor) -----------------------------------
    def stage_linear_probe(self, state):
        n_intents = 0 if state.intent_classes is None else len(state.intent_classes)
        state.module = module = TaggerModule(
            state.encoder, len(state.tag_classes), n_intents, dropout=self.dropout,
            amp=state.autocast_dtype is not None, sparse_backward=state.device.type == "cpu").to(state.device)
        with self._oom_advice("feature extraction"):
            feats, labels, pooled = frozen_states(module, state.train, eval_batch_size(self.batch_size), state.device,
                                                  self._progress("probe features"))
        # The probe is the floor whatever the heads start from; with head_init="random" they start elsewhere.
        start = {k: v.detach().clone() for k, v in module.trainable_state().items()}
        fit_linear_probe(module.head, feats, labels)
        if module.intent_head is not None:
            fit_linear_probe(module.intent_head, pooled, state.train["intent"])
        state.probe_heads = {k: v.detach().clone() for k, v in module.trainable_state().items()}
        if self.head_init == "random":
            module.load_trainable_state_(start)

    # -- selection: what the strategy trains --------------------------------------------------
    def stage_selection(self, state):
        train = state.train
        ctx = FitContext(encodings=train, y=targets(train), groups=state.groups,
                         focus=state.focus[state.train_idx], device=state.device, random_state=state.seed,
                         progress=self._progress("sensitivity"), kind=state.kind)
        module = state.module
        with self._oom_advice("sensitivity scoring"):
            state.mask = state.strategy.setup(module, ctx)
        module.to(state.device)
        module.trained_names = [n for n, p in module.encoder.named_parameters() if p.requires_grad]
        state.n_trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        state.mask_summary = state.strategy.summary(module, state.mask)
        if "added_parameters" in state.mask_summary and module.intent_head is not None:  # a head, not an adapter
            state.mask_summary["added_parameters"] -= sum(p.numel() for p in module.intent_head.parameters())
        lr = self.learning_rate
        state.learning_rate = lr if lr is not None else state.strategy.default_learning_rate
        scorer = self._validation_scorer(state)
        selection = ModelSelection(trained=("training",) if self.max_epochs else (),
                                   say=print if self.verbose else (lambda message: None))
        # The floor: what the strategy starts from, with the probe's heads (token and intent), scored as a whole.
        selection.record_floor(module, {k[len("head."):]: v for k, v in state.probe_heads.items()
                                        if k.startswith("head.")})
        selection.floor.update(state.probe_heads)
        selection.score = scorer
        if scorer is not None:
            with selection.loaded(module, selection.floor):
                selection.floor_scores = scorer(module)
        state.selection = selection
        state.plan = plan_epochs(len(state.train_idx), self.batch_size, self.max_epochs, self.max_steps)

    def _validation_scorer(self, state):
        """``score(module)``: validation (slot F1, averaged with intent accuracy in the joint mode; token loss)."""
        valid = state.valid
        if valid is None:
            return None
        true_tags = as_iob2([state.tags[i] for i in state.valid_idx], state.scheme)
        true_intents = None if state.intents is None else [state.intents[i] for i in state.valid_idx]
        classes = state.tag_classes
        batch = eval_batch_size(self.batch_size)

        def score(module):
            with self._oom_advice("validation"):
                tags, intents, seen = token_outputs(module, valid, batch, state.device, fill_row(classes))
            pred = as_iob2(decode(tags, classes, state.scheme, self.decoding), state.scheme)
            value = slot_f1_score(true_tags, pred)
            true_ids = (_ids(state.tags[i], classes) for i in state.valid_idx)
            picked = [p[np.arange(len(p)), t][m] for p, t, m in zip(tags, true_ids, seen)]
            loss = -float(np.mean(np.log(np.maximum(np.concatenate(picked), 1e-12))))
            if intents is not None:
                acc = intent_accuracy_score([(c,) for c in true_intents],
                                            [(c,) for c in state.intent_classes[intents.argmax(axis=1)].tolist()])
                value = (value + acc) / 2
            return value, loss

        return score

    # -- training ------------------------------------------------------------------------------
    def stage_training(self, state):
        module, lr = state.module, state.learning_rate
        state.selection.record_start(module)
        with self._oom_advice("training"):
            state.history, losses, state.interrupted = train_tagger(
                module, state.train, state.kind, epochs=state.plan["epochs"], batch_size=self.batch_size, lr=lr,
                head_lr=self.head_learning_rate or lr, weight_decay=self.weight_decay, device=state.device,
                seed=state.seed, score=state.selection.score, patience=self.patience,
                progress=self._progress("training"), say=print if self.verbose else None)
        state.selection.discard_if_diverged("training", losses, module)

    # -- interpolation: probe to finetune (WiSE-FT), never below the frozen probe -----------------
    def stage_interpolation(self, state):
        history = [dict(r, valid_acc=r.get("valid_score", -1.0)) for r in state.history]
        state.selection.choose_blend(state.module, history, self.interpolate_weights)
        state.selection.keep_floor_if_better(state.module)
        if not state.selection.trained:  # nothing trained (max_epochs=0): the probe, whatever the heads started from
            state.module.load_trainable_state_(state.selection.floor)

    # -- head refit: the heads as logistic regressions on every text's final states ----------------
    def stage_head_refit(self, state):
        module = state.module
        with self._oom_advice("head refit"):
            feats, labels, pooled = frozen_states(module, state.encodings, eval_batch_size(self.batch_size),
                                                  state.device, self._progress("refit"))
        fit_linear_probe(module.head, feats, labels)
        if module.intent_head is not None:
            fit_linear_probe(module.intent_head, pooled, state.encodings["intent"])

    def stage_finalize(self, state):
        state.module.merge_()
        state.module.eval()


def _ids(tags, classes):
    index = {c: i for i, c in enumerate(classes.tolist())}
    return np.array([index[t] for t in tags], dtype=np.int64)


def _spans(tags, scheme):
    """``[(set of word indices, slot type), ...]`` of one text's tags."""
    spans, current, kind = [], None, None
    for i, t in enumerate(as_iob2([tags], scheme)[0]):
        if t == OUTSIDE or t.startswith("B-") or t[2:] != kind:  # an I- of another type (or after O) opens a span
            if current:
                spans.append((current, kind))
            current, kind = (set(), t[2:]) if t != OUTSIDE else (None, None)
        if current is not None:
            current.add(i)
    if current:
        spans.append((current, kind))
    return spans


def words_tokenizer(tokenizer, path):
    """The tokenizer, able to read pre-split words: byte-level BPE ones need ``add_prefix_space=True``."""
    try:
        tokenizer([["a", "b"]], is_split_into_words=True)
        return tokenizer
    except (ValueError, TypeError, AssertionError) as exc:
        if "add_prefix_space" not in str(exc):
            raise
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False, add_prefix_space=True)
    if again.pad_token is None:
        again.pad_token = tokenizer.pad_token
    return again
