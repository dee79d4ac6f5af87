"""What model files and pickles written by earlier versions mean where they lack a field: in one place.

A field a version added is absent from files written before it; the model that wrote such
a file was fitted as the value here says, so loading fills it in rather than failing.
"""

from __future__ import annotations

#: parameter -> what a file written before the parameter existed was fitted with
PARAMS = {
    "refit_head": False,
    "average_epochs": False,
    "contrastive_epochs": 0,  # before 0.3.0: no contrastive stage
    "unknown_label": None,  # before 0.4.0: no rejection, one label per text
    "unknown_threshold": "auto",
    "multilabel_threshold": 0.5,
    "memory": None,  # before 0.7.0: nothing kept across fits
    "precision": "auto",  # before 0.7.2: bf16 autocast on CUDA only, which "auto" then meant
    "contrastive_max_steps": None,  # before 0.7.7: every contrastive epoch whole
    "max_steps": None,  # before 0.8.0: every cross-entropy epoch up to max_epochs
}

#: fitted attribute -> its value in files written before it existed (a callable reads the file's fitted fields)
FITTED = {
    "added_tokens_": None,
    # Before interpolation existed a model was the finetune (1) or the probe (0).
    "interpolation_": lambda fields: 1.0 if fields["finetuned"] else 0.0,
    "interpolation_scores_": [],
    "fit_stages_": {},
    # Before 0.8.0 no step budget: the plan was max_epochs epochs (not recorded then).
    "finetune_plan_": {"regime": "every epoch", "epochs": None, "steps_per_epoch": None, "max_steps": None},
    # Before 0.4.0: one label per text, never a rejection.
    "multilabel_": False,
    "label_names_": None,
    "thresholds_": None,
    "unknown_threshold_": None,
}

#: Before 0.6.0 no rejector was kept (files: field "rejector" absent; pickles: attribute
#: ``rejector_`` absent): the rejection score is then the model's own best-class probability.
REJECTOR = None


def with_older_params(params):
    """``params`` of a model file, with what files written before a parameter existed were fitted with."""
    return moved_params({**PARAMS, **params})[0]


def moved_params(params):
    """``(params, moved)``: the mask options that were parameters before 0.9.0, moved; ``moved`` their values.

    ``density`` and ``n_sensitivity_samples`` saved as numbers become ``"deprecated"``; a value other
    than the option's default goes into ``strategy_options`` where the strategy has the option, so
    a loaded model refits as it was fitted, without a warning. ``moved`` holds every value found
    that the strategy knows (its ``strategy_`` description lacks them).
    """
    from ..fit.moved import MOVED, NOT_GIVEN
    from ..strategies import STRATEGIES, checked_options, option_names

    params, moved = dict(params), {}
    strategy = params.get("strategy")
    for name in MOVED:
        value = params.get(name)
        if isinstance(value, str) or value is None:
            continue
        params[name] = NOT_GIVEN
        if name in option_names(strategy):
            moved[name] = value
            if value != checked_options(STRATEGIES[strategy], {})[name]:
                params["strategy_options"] = {**(params.get("strategy_options") or {}), name: value}
    return params, moved


def describe_moved(description, moved):
    """A fitted ``strategy_`` description from before 0.9.0, with the mask options it was fitted with."""
    if isinstance(description, dict):
        for name, value in moved.items():
            description.setdefault(name, value)
