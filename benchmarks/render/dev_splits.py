"""The interpolation rows and the dev-split parts: ways of ending a fit, and the dev screen's leads."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .rows import _ms, provenance


def _interpolation(files, plots):
    rows = files.get("interpolation", [])
    groups = defaultdict(list)
    for r in rows:
        groups[(r["dataset"], r["regime"], r.get("strategy", "token_sparse"), bool(r.get("refit_head")))].append(r)
    lines = ["`python -m benchmarks.run --config interpolation`. Test accuracy, mean ± sample std over seeds: "
             "the probe (a=0), the finetune as trained (a=1), the either/or rule (`interpolate_weights=False`), "
             "the point chosen on validation, and the fitted model (with the head refit when the rows ran it).", "",
             "| dataset | regime | strategy | written by | seeds | probe (a=0) | finetune (a=1) | either/or | "
             "interpolated | fitted model | a chosen | device |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, regime, strategy, refit), g in sorted(groups.items()):
        cells = [dataset, regime, strategy, provenance(g), str(len(g))]
        cells += [_ms([r["test_acc"][k] for r in g]) for k in ("probe", "finetune", "either_or", "interpolated")]
        cells += [_ms([r["test_acc"]["final"] for r in g]) if refit else "(no head refit then)"]
        cells += [", ".join(f"{r['chosen']:g}" for r in sorted(g, key=lambda r: r["seed"])),
                  ", ".join(sorted({r["device"] for r in g}))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


DEV_VARIANTS = ["probe", "finetune", "default", "refit_train", "refit_all", "epoch_average",
                "epoch_average_refit_all", "probe_all"]


def _dev_variants(files, plots):
    """Each way of ending a fit, per dataset and regime and per version (rows without one: before 0.7.8)."""
    groups = defaultdict(dict)
    for r in files.get("dev_variants", []):  # a fit run again by the same version counts once, as its latest row
        groups[(r["dataset"], r["regime"], r.get("version", "before 0.7.8"))][r["seed"]] = r
    lines = ["`python -m benchmarks.run --config dev_variants`. Dev accuracy (a split carved from the training "
             "set; the test split is not read), mean ± sample std over seeds. `default` is the point chosen on "
             "validation before the head refit; `refit_all` is what `refit_head=True` keeps. Epochs: the "
             "cross-entropy epochs `epoch_average` averaged, per seed (from 0.7.8 every epoch the fit ran; in the "
             "rows before it, a fit that stopped early ran one more).", "",
             "| dataset | regime | version | seeds | fit / dev texts | epochs | " + " | ".join(DEV_VARIANTS) + " | device |",
             "|---|---|---|---|---|---|" + "---|" * len(DEV_VARIANTS) + "---|"]
    for (dataset, regime, version), by_seed in sorted(groups.items()):
        g = [by_seed[s] for s in sorted(by_seed)]
        cells = [dataset, regime, version, str(len(g)), f"{g[0]['n_fit']} / {g[0]['n_dev']}",
                 ", ".join(str(r["n_epochs"]) for r in g)]
        cells += [_ms([r["dev"][k][0] for r in g if k in r["dev"]]) for k in DEV_VARIANTS]
        cells.append(", ".join(sorted({r["device"] for r in g})))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _dev_screen(files, plots):
    """Every lead of the dev screen against the references and ablations of the same run."""
    groups = defaultdict(list)
    for r in files.get("dev_screen", []):
        groups[(r["dataset"], r["regime"], r["variant"])].append(r)
    lines = []
    for dataset, regime in sorted({k[:2] for k in groups}):
        keys = [k for k in groups if k[:2] == (dataset, regime)]

        def mean(variant, field="dev_accuracy"):
            vals = [r[field] for r in groups.get((dataset, regime, variant), []) if r.get(field) is not None]
            return np.mean(vals) if vals else None

        frozen, fisher = mean("frozen_lr"), mean("fisher")
        ex = groups[keys[0]][0]
        lines += [f"#### {dataset}, {regime}: {ex['n_fit']:,} fit texts, {ex['n_dev']:,} dev texts", "",
                  f"`python -m benchmarks.run --config dev_screen`; written by {provenance(sum((groups[k] for k in keys), []))}; "
                  f"{ex['device']}, torch {ex['torch']}. One seed screens a lead; fit seconds are indicative only "
                  "(other work shared the CPU during the screen); the cost of what is kept is measured by `cost_cpu`.", "",
                  "| variant | seeds | dev accuracy | vs frozen LR | vs fisher | fit s | note |",
                  "|---|---|---|---|---|---|---|"]
        order = sorted(keys, key=lambda k: -(mean(k[2]) or 0))
        for key in order:
            g = groups[key]
            ok = [r for r in g if r.get("dev_accuracy") is not None]
            acc, fit = mean(key[2]), mean(key[2], "fit_s")
            cells = [key[2], ", ".join(str(r["seed"]) for r in ok) or "-", _ms([r["dev_accuracy"] for r in ok]),
                     f"{acc - frozen:+.4f}" if acc is not None and frozen is not None else "",
                     f"{acc - fisher:+.4f}" if acc is not None and fisher is not None else "",
                     f"{fit:.0f}" if fit is not None else "",
                     "; ".join(sorted({r["error"][:80] for r in g if r.get("error")}))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines
