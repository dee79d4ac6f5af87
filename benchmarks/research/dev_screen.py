"""Part ``dev_screen``: leads for the default method, scored on dev splits carved from the training sets.

Every variant fits the same 10-shot sample (or the full training set less the dev part) and is
scored on up to ``dev_size`` *training* texts the sample did not draw; the official test split
is never read. The references a user would pick instead (``frozen_lr``, ``full``) and the
ablations (``fisher``, ``random``) run in the same screen. One fresh process per fit; rows
append as they come, failures included (``error``).

A variant is ``{"method": strategy or reference, "lead": class in benchmarks.research.leads (optional),
"params": estimator parameters, "attrs": class attributes of the lead}``.
"""

from __future__ import annotations

import time

from ..common import MODEL, append_row, how_run, in_fresh_process, peak_memory, train_dev


def one_screen(spec, queue):
    import torch
    from sklearn.metrics import accuracy_score

    from sksparseft import TokenSparseClassifier

    from ..compare import ALL_REFERENCES, BASELINES, reference, validation_trace
    from . import leads

    leads.register_lab_strategies()  # token_layers and fisher_batched, in this fit's process only

    X, y, Xd, yd = train_dev(spec["dataset"], spec["regime"], spec["seed"], spec["dev_size"], spec["dev_fraction"])
    torch.manual_seed(spec["seed"])
    row = {k: v for k, v in spec.items()}
    t0 = time.perf_counter()
    try:
        if spec["method"] in ALL_REFERENCES + BASELINES:
            model = reference(spec["method"], X, y, seed=spec["seed"])
            if hasattr(getattr(model, "steps", [[None]])[-1][-1], "C_"):  # frozen_lr_cv: the C it chose
                row["C"] = float(model.steps[-1][-1].C_[0])
        else:
            cls = getattr(leads, spec["lead"]) if spec.get("lead") else TokenSparseClassifier
            if spec.get("attrs"):
                cls = type(cls.__name__, (cls,), dict(spec["attrs"]))
            model = cls(model=MODEL, strategy=spec["method"], random_state=spec["seed"], **spec.get("params", {}))
            model.fit(X, y)
            row.update(epochs=len(model.history_) - 1, interpolation=model.interpolation_,
                       stages=model.fit_stages_, trainable_params=int(model.n_trainable_params_),
                       **validation_trace(model))
        row["fit_s"] = time.perf_counter() - t0
        pred = model.classes_[model.predict_proba(Xd).argmax(axis=1)]
        row["dev_accuracy"] = float(accuracy_score(yd, pred))
    except Exception as exc:  # a lead that crashes is a result too
        row["error"] = f"{type(exc).__name__}: {exc}"
    row.update(n_fit=len(X), n_dev=len(Xd), **peak_memory(), **how_run())
    queue.put(row)


def run(cfg, out, args):
    for dataset in cfg["datasets"]:
        if args.datasets and dataset not in args.datasets:
            continue
        for seed in [s for s in cfg["seeds"] if not args.seeds or s in args.seeds]:
            for name, variant in cfg["variants"].items():
                if args.only and name not in args.only:
                    continue
                spec = {"config": cfg.get("name", "dev_screen"), "variant": name, "dataset": dataset,
                        "regime": cfg.get("regime", "10shot"), "seed": seed, "dev_size": cfg.get("dev_size", 1500),
                        "dev_fraction": cfg.get("dev_fraction", 0.2), **variant}
                row = in_fresh_process(one_screen, spec)
                if row is None:
                    row = {**spec, "error": "process died", **how_run()}
                append_row(out, row)
                acc = row.get("dev_accuracy")
                print(f"{dataset} seed {seed} {name}: " + (f"dev {acc:.4f} fit {row['fit_s']:.0f}s" if acc is not None
                                                           else row["error"]), flush=True)
