"""TokenSparseTagger: slots (a tag per word), and optionally an intent per text, as a scikit-learn estimator."""

from __future__ import annotations

import io
import os
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..model.backbone import DEFAULT_MODEL
from ..model.devices import PRECISIONS, resolve_device, resolve_precision
from ..model.inference import eval_batch_size, progress_bar
from ..strategies import get_strategy
from .decoding import decode
from .defaults import DEFAULT_STRATEGY
from .data import OUTSIDE, align, as_iob2, tag_scheme, validate_tags, validate_words
from .stages import TaggerStages, TaggerState, fill_row, token_outputs
from .targets import frame_accuracy_score, intent_accuracy_score, slot_f1_score

#: texts tokenised and run at a time by predict (peak memory stays flat on long inputs)
_CHUNK = 4096

#: every fitted attribute; assigned together, only at the end of fit or load
FITTED = ("tags_", "intents_", "tag_scheme_", "token_groups_", "strategy_", "mask_", "mask_summary_",
          "n_trainable_params_", "learning_rate_", "finetune_plan_", "history_", "interrupted_", "finetuned_",
          "interpolation_", "interpolation_scores_", "fit_time_", "fit_stages_", "module_", "tokenizer_", "device_")


class TokenSparseTagger(TaggerStages, BaseEstimator):
    """Slot tagger (a tag per word) and, in the joint mode, intent classifier, on a sparsely finetuned encoder.

    ``fit(X, y)`` takes texts (split on whitespace) or lists of words, and per text one tag per
    word (IOB2 such as ``B-city``/``I-city``/``O``, or plain labels, a run of one label being one
    slot); with ``(intent, tags)`` pairs as ``y`` it fits one backbone with a token head and a
    sentence head, and ``predict`` gives pairs back. Each word is tagged at its first subword
    piece. The fit is the classifier's: a logistic regression per token on the frozen backbone
    (the probe the finetune starts from and never ends below on validation), the ``strategy``
    choosing what trains (``token_sparse`` focuses its sensitivity on the pieces of labelled
    slots), the same step budget, the point between probe and finetune best on validation (WiSE-FT).

    Parameters
    ----------
    model : str or path, default="all-MiniLM-L6-v2"
        Backbone, as for :class:`~sksparseft.TokenSparseClassifier` (its tokenizer must be a fast one).
    strategy : str, default="token_sparse"
        What to finetune: a name from ``sksparseft.strategies.STRATEGIES`` (docs/strategies.md); the
        default is the one the rule of docs/research.md chose on ATIS's development split.
    strategy_options : dict or None, default=None
        Options of the strategy (``{"density": 0.05}`` for the mask strategies, ``{"r": 16}`` for lora...).
    n_token_groups : int or None, default=None
        Token groups to keep (subword n-grams of the slots' spans); None means 10 per slot type.
    max_ngram, min_count : int, default=3, 3
        Longest token group in pieces; fewest spans it must occur in (lowered where a slot type has
        few spans, so that every type can have groups).
    learning_rate : float or None, default=None
        AdamW learning rate of what the strategy trains; None uses the strategy's customary rate.
    head_learning_rate : float or None, default=None
        Learning rate of the heads; None uses ``learning_rate``.
    weight_decay : float, default=0.01
    max_epochs : int, default=8
        Most passes over the training part; 0 keeps the frozen probe.
    max_steps : int or None, default=600
        Step budget: with more steps in ``max_epochs`` epochs, fewer epochs (``finetune_plan_``).
    batch_size : int, default=32
    max_length : int, default=128
        Texts are cut to this many pieces: words past it train nothing and are tagged "O" (a warning says how many).
    dropout : float, default=0.1
        Dropout on the token states before the heads.
    head_init : {"linear_probe", "random"}, default="linear_probe"
        Start the heads from the frozen probe (LP-FT) or at random; the probe is the floor either way.
    validation_fraction : float in [0, 1), default=0.1
        Held-out share of the texts (stratified by intent in the joint mode) for early stopping and
        the choices made on validation (slot F1, averaged with intent accuracy in the joint mode).
    patience : int, default=2
        Epochs without a better validation score before stopping (best epoch restored).
    interpolate_weights : bool, default=True
        The point between the probe (0) and the finetune (1) best on validation (WiSE-FT).
    refit_head : bool, default=False
        Refit the heads as logistic regressions on every text's final states, validation included;
        the refit heads are not scored against the frozen probe (the floor holds for what comes before).
    decoding : {"constrained", "argmax"}, default="constrained"
        How ``predict`` (and the choices on validation) read tags off the probabilities: the most
        probable valid IOB2 sequence (an ``I-x`` only after ``B-x`` or ``I-x``; Viterbi), or each
        word's most probable tag. Plain labels are read by ``argmax`` either way.
    device : str, default="auto"
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        As for the classifier: bf16 passes (probe, selection, training, interpolation) where ``auto``
        picks them for the classifier (the bf16 screen was the classifier's), else float32.
    random_state : int or None, default=None
        Seeds the split, the mask, the batches and dropout; on CPU the same seed gives the same tags.
    verbose : int, default=0
        Progress bars and a per-epoch log when > 0.

    Attributes
    ----------
    tags_ : ndarray of str
        The tags, in the order of ``predict_proba``'s columns.
    intents_ : ndarray or None
        The intents, in the order of ``predict_intent_proba``'s columns (joint mode), else None.
    tag_scheme_ : {"iob2", "plain"}
    token_groups_ : list of TokenGroup
        Each slot type's token groups, best first (``label`` is the slot type).
    strategy_, mask_, mask_summary_, n_trainable_params_, learning_rate_, finetune_plan_, history_,
    interrupted_, finetuned_, interpolation_, interpolation_scores_, fit_time_, fit_stages_ :
        As for the classifier (``history_`` rows carry ``valid_score``).
    module_, tokenizer_, device_ : TaggerModule, tokenizer, torch.device
    """

    def __init__(self, model=DEFAULT_MODEL, *, strategy=DEFAULT_STRATEGY, strategy_options=None, n_token_groups=None,
                 max_ngram=3, min_count=3, learning_rate=None, head_learning_rate=None, weight_decay=0.01,
                 max_epochs=8, max_steps=600, batch_size=32, max_length=128, dropout=0.1, head_init="linear_probe",
                 validation_fraction=0.1, patience=2, interpolate_weights=True, refit_head=False,
                 decoding="constrained", device="auto", precision="auto", random_state=None, verbose=0):
        self.model = model
        self.strategy = strategy
        self.strategy_options = strategy_options
        self.n_token_groups = n_token_groups
        self.max_ngram = max_ngram
        self.min_count = min_count
        self.learning_rate = learning_rate
        self.head_learning_rate = head_learning_rate
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.max_length = max_length
        self.dropout = dropout
        self.head_init = head_init
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.interpolate_weights = interpolate_weights
        self.refit_head = refit_head
        self.decoding = decoding
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    _parameter_constraints = {
        "model": [str, os.PathLike],
        "strategy": [str],
        "strategy_options": [dict, None],
        "n_token_groups": [Interval(Integral, 0, None, closed="left"), None],
        "max_ngram": [Interval(Integral, 1, None, closed="left")],
        "min_count": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0.0, np.inf, closed="neither"), None],
        "head_learning_rate": [Interval(Real, 0.0, np.inf, closed="neither"), None],
        "weight_decay": [Interval(Real, 0.0, np.inf, closed="left")],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "max_steps": [Interval(Integral, 1, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_length": [Interval(Integral, 2, None, closed="left")],
        "dropout": [Interval(Real, 0.0, 1.0, closed="left")],
        "head_init": [StrOptions({"linear_probe", "random"})],
        "validation_fraction": [Interval(Real, 0.0, 1.0, closed="left")],
        "patience": [Interval(Integral, 0, None, closed="left")],
        "interpolate_weights": ["boolean"],
        "refit_head": ["boolean"],
        "decoding": [StrOptions({"constrained", "argmax"})],
        "device": [str, torch.device, None],
        "precision": [StrOptions(set(PRECISIONS))],
        "random_state": [Interval(Integral, 0, 2**32 - 1, closed="both"), None],
        "verbose": [Interval(Integral, 0, None, closed="left")],
    }

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the tagger: run the stages of :data:`~sksparseft.tagging.stages.STAGES` in turn.

        Parameters
        ----------
        X : list of str or list of list of str
            Texts (split on whitespace into words) or their words.
        y : list of list of str, or list of (intent, list of str)
            One tag per word of each text; ``(intent, tags)`` pairs fit the joint mode.

        Returns
        -------
        self
        """
        state = self._start(X, y)
        for name in self._stages():
            with state.timed(name), self._precision(state, name):
                getattr(self, f"stage_{name}")(state)
        selection = state.selection
        values = dict(
            tags_=state.tag_classes, intents_=state.intent_classes, tag_scheme_=state.scheme,
            token_groups_=state.groups, strategy_=state.strategy.describe(), mask_=state.mask,
            mask_summary_=state.mask_summary, n_trainable_params_=state.n_trainable,
            learning_rate_=state.learning_rate, finetune_plan_=dict(state.plan),
            history_=selection.history([dict(r, valid_acc=r["valid_score"]) if "valid_score" in r else r
                                        for r in state.history]),
            interrupted_=state.interrupted, finetuned_=selection.finetuned, interpolation_=selection.blend,
            interpolation_scores_=selection.scores, fit_time_=time_since(state.started),
            fit_stages_=dict(state.stage_times), module_=state.module, tokenizer_=state.tokenizer,
            device_=state.device)
        return set_fitted(self, values)

    def _start(self, X, y):
        """Validate everything that can be checked before anything loads."""
        strategy = get_strategy(self.strategy, self.strategy_options)
        if strategy.settings.get("cache_frozen") or strategy.settings.get("ce_min_layer") is not None:
            raise ValueError("strategy_options cache_frozen and ce_min_layer belong to the classifier's stages; "
                             "the tagger trains every selected entry in one stage")
        words = validate_words(X)
        tags, intents = validate_tags(y, words)
        if len(words) < 2:
            raise ValueError(f"fit needs at least 2 texts, got {len(words)}")
        tag_classes = np.array(sorted({t for row in tags for t in row}), dtype=object)
        intent_classes = None
        if intents is not None:
            intent_classes = np.array(sorted(set(intents), key=lambda c: (type(c).__name__, c)), dtype=object)
        device = resolve_device(self.device)
        seed = self.random_state
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31 - 1))
        else:
            torch.manual_seed(seed)
        return TaggerState(words=words, tags=tags, intents=intents, tag_classes=tag_classes,
                           intent_classes=intent_classes, scheme=tag_scheme(tags), device=device, seed=seed,
                           strategy=strategy,
                           autocast_dtype=resolve_precision(self.precision, device, strategy.bf16_on_cpu()))

    # ------------------------------------------------------------------ predict
    def _outputs(self, X):
        """``(words, tag probabilities per text (n_words, tags), intent probabilities or None)``."""
        check_is_fitted(self, "module_")
        words = validate_words(X)
        tags, intents = [], []
        fill = fill_row(self.tags_)
        for start in range(0, len(words), _CHUNK):
            part = words[start:start + _CHUNK]
            enc = align(self.tokenizer_, part, self.max_length, warn="texts")
            t, i, _ = token_outputs(self.module_, enc, eval_batch_size(self.batch_size), self.device_, fill,
                                    progress_bar(self.verbose, "predict"))
            tags += t
            if i is not None:
                intents.append(i)
        return words, tags, (np.vstack(intents) if intents else None) if self.intents_ is not None else None

    def predict_proba(self, X):
        """Per text, an array ``(n_words, n_tags)``: each word's tag probabilities, columns in the order of ``tags_``."""
        return self._outputs(X)[1]

    def predict_intent_proba(self, X):
        """Intent probabilities ``(n_texts, n_intents)``, columns in the order of ``intents_`` (joint mode)."""
        check_is_fitted(self, "module_")
        if self.intents_ is None:
            raise AttributeError("predict_intent_proba needs a joint fit: y of (intent, tags) pairs")
        return self._outputs(X)[2]

    def predict(self, X):
        """Per text, its tags (one per word); in the joint mode ``(intent, tags)`` pairs."""
        _, proba, intents = self._outputs(X)
        tags = decode(proba, self.tags_, self.tag_scheme_, self.decoding)
        if intents is None:
            return tags
        return [(self.intents_[i], t) for i, t in zip(intents.argmax(axis=1).tolist(), tags)]

    def score(self, X, y):
        """Entity-level micro-F1 of the slots (``seqeval``); joint mode: its mean with intent accuracy.

        Tags (and intents) the tagger never saw in fit are an error: it could not predict them.
        ``sksparseft.tagging.slot_f1_score`` on ``predict``'s output counts them as misses instead.
        """
        check_is_fitted(self, "module_")
        words = validate_words(X)
        tags, intents = validate_tags(y, words)
        if (intents is None) != (self.intents_ is None):
            raise ValueError("y holds " + ("(intent, tags) pairs" if intents is not None else "tag lists only")
                             + " but the tagger was fitted " + ("without" if self.intents_ is None else "with")
                             + " intents")
        unseen = sorted({t for row in tags for t in row} - set(self.tags_.tolist()))
        if intents is not None:
            known = set(self.intents_.tolist())
            unseen += sorted({repr(c) for c in intents if c not in known})
        if unseen:
            raise ValueError(f"y holds labels the tagger never saw in fit: {unseen[:10]}; it cannot predict them "
                             "(sksparseft.tagging.slot_f1_score(y, tagger.predict(X)) counts them as misses)")
        pred = self.predict(words)
        scheme = self.tag_scheme_
        f1 = slot_f1_score(as_iob2(tags, scheme), as_iob2(pred if intents is None else [p[1] for p in pred], scheme))
        if intents is None:
            return f1
        return (f1 + intent_accuracy_score([(c,) for c in intents], pred)) / 2

    def frame_accuracy(self, X, y):
        """Share of texts whose intent and every tag ``predict`` gets right (joint mode)."""
        check_is_fitted(self, "module_")
        if self.intents_ is None:
            raise AttributeError("frame_accuracy needs a joint fit: y of (intent, tags) pairs")
        words = validate_words(X)
        tags, intents = validate_tags(y, words)
        if intents is None:
            raise ValueError("frame_accuracy needs y of (intent, tags) pairs")
        return frame_accuracy_score(list(zip(intents, tags)), self.predict(words))

    # ------------------------------------------------------------------ explanations
    def token_group_table(self, top=None):
        """Each slot type's token groups, best first: rows ``{slot, rank, group, score, count}``."""
        check_is_fitted(self, "module_")
        rows, rank = [], {}
        for g in self.token_groups_:
            rank[g.label] = rank.get(g.label, 0) + 1
            if top is None or rank[g.label] <= top:
                rows.append({"slot": g.label, "rank": rank[g.label], "group": g.text, "score": g.score, "count": g.count})
        return rows

    def explain(self, X, top=5):
        """Which words of each text hold up each predicted slot, and how much (see :func:`~sksparseft.tagging.explain.explain_slots`)."""
        from .explain import explain_slots

        check_is_fitted(self, "module_")
        return explain_slots(self, validate_words(X), top=top)

    # ------------------------------------------------------------------ files and exports
    def save(self, path, include_backbone=False):
        """Save the fitted tagger to one file, atomically and safely (safetensors + JSON; no code runs on load)."""
        from .persistence import save_tagger

        check_is_fitted(self, "module_")
        return save_tagger(self, path, include_backbone=include_backbone)

    @classmethod
    def load(cls, path, device=None):
        """Load a tagger written by :meth:`save`; a modified, truncated or classifier's file is a ``ModelFileError``."""
        from .persistence import load_tagger

        return load_tagger(cls, path, device=device)

    def to_huggingface(self, path, overwrite=False):
        """Write a token-classification folder that ``AutoModelForTokenClassification`` loads alone.

        Its ``config.id2label`` holds ``tags_``; in the joint mode ``intent_head.safetensors`` and
        ``config.sksparseft["intents"]`` hold the intent head (see the folder's README.md).
        """
        from .export import to_huggingface

        check_is_fitted(self, "module_")
        return to_huggingface(self, path, overwrite=overwrite)

    def to_onnx(self, path):
        """Write an ONNX graph: ``input_ids``, ``attention_mask`` -> ``tag_probabilities`` (+ ``intent_probabilities``)."""
        from .export import to_onnx

        check_is_fitted(self, "module_")
        return to_onnx(self, path)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        state = self.__dict__.copy()
        if "module_" in state:
            buf = io.BytesIO()
            torch.save(state.pop("module_"), buf)
            state["_module_bytes"], state["device_"] = buf.getvalue(), str(state["device_"])
        return state

    def __setstate__(self, state):
        blob = state.pop("_module_bytes", None)
        self.__dict__.update(state)
        if blob is not None:
            device = torch.device(state["device_"])
            if device.type == "cuda" and not torch.cuda.is_available():
                warnings.warn("the tagger was fitted on CUDA, which is not available here; loading it on the CPU",
                              stacklevel=2)
                device = torch.device("cpu")
            self.module_ = torch.load(io.BytesIO(blob), map_location=device, weights_only=False).eval()
            self.device_ = device

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.target_tags.required = True
        tags.non_deterministic = False
        return tags


def time_since(start):
    import time

    return time.perf_counter() - start


def set_fitted(est, values):
    """Assign every fitted attribute at once (an exception before this leaves ``est`` as it was)."""
    missing, unknown = set(FITTED) - set(values), set(values) - set(FITTED)
    if missing or unknown:
        raise TypeError(f"set_fitted needs exactly the fitted attributes (missing {sorted(missing)}, unknown {sorted(unknown)})")
    for name in FITTED:
        setattr(est, name, values[name])
    return est
