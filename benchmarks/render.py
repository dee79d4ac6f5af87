"""Render benchmarks/results/*.jsonl into docs/benchmarks.md (between markers) and docs/img/*.png."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
IMG = ROOT / "docs" / "img"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _rows():
    rows = []
    for path in sorted(RESULTS.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if "config" in row and "method" in row:
                rows.append(row)
    return rows


def _interpolation_rows():
    path = RESULTS / "interpolation.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _interpolation_table(rows):
    """Test accuracy at the ends of the probe -> finetune line, at the point chosen on validation,
    and of the fitted estimator (which, with ``refit_head``, also refits its head on every text)."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["dataset"], r["regime"], r.get("strategy", "token_sparse"), r.get("refit_head", False))].append(r)
    kinds = ["probe", "finetune", "either_or", "interpolated"]
    lines = ["| dataset | regime | strategy | seeds | probe (a=0) | finetune (a=1) | either/or | interpolated | "
             "head refit on every text | a chosen | device |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, regime, strategy, refit), g in sorted(groups.items()):
        cells = [dataset, regime, strategy, str(len(g))]
        cells += [_ms([r["test_acc"][k] for r in g]) for k in kinds]
        cells += [_ms([r["test_acc"]["final"] for r in g]) if refit else "(not run)"]
        cells += [", ".join(f"{r['chosen']:g}" for r in sorted(g, key=lambda r: r["seed"])),
                  ", ".join(sorted({r["device"] for r in g}))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


DEV_VARIANTS = ["probe", "finetune", "default", "refit_train", "refit_all", "epoch_average",
                "epoch_average_refit_all", "probe_all"]


def _dev_variants_table():
    """Dev-split accuracy (carved from the training set) of the ways of ending a fit."""
    path = RESULTS / "dev_variants.jsonl"
    if not path.exists():
        return ""
    groups = defaultdict(list)
    for line in path.read_text().splitlines():
        r = json.loads(line)
        groups[(r["dataset"], r["regime"])].append(r)
    lines = ["| dataset | regime | seeds | fit / dev texts | " + " | ".join(DEV_VARIANTS) + " | device |",
             "|---|---|---|---|" + "---|" * len(DEV_VARIANTS) + "---|"]
    for (dataset, regime), g in sorted(groups.items()):
        cells = [dataset, regime, str(len(g)), f"{g[0]['n_fit']} / {g[0]['n_dev']}"]
        for k in DEV_VARIANTS:
            have = [r["dev"][k][0] for r in g if k in r["dev"]]
            cells.append(_ms(have) + (f" ({len(have)} seeds)" if have and len(have) < len(g) else ""))
        cells.append(", ".join(sorted({r["device"] for r in g})))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _label(row):
    extra = {k: v for k, v in (row.get("params") or {}).items() if k != "max_epochs"}
    return row["method"] + (" " + " ".join(f"{k}={v}" for k, v in extra.items()) if extra else "")


def _ms(values, fmt="{:.4f}"):
    values = [v for v in values if v is not None]
    if not values:
        return ""
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(np.mean(values))} ± {fmt.format(np.std(values, ddof=1))}"


def _table(rows):
    groups = defaultdict(list)
    for r in rows:
        groups[_label(r)].append(r)
    full_fit = np.mean([r["fit_s"] for r in groups.get("full", [])]) if groups.get("full") else None
    has_oos = any("oos_recall" in r for r in rows)
    head = "| method | seeds | accuracy | macro-F1 |" + (" OOS recall |" if has_oos else "") + \
        " fit s | fit / full | peak RSS MiB | trainable params |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    order = sorted(groups, key=lambda k: -np.mean([r["accuracy"] for r in groups[k]]))
    for key in order:
        g = groups[key]
        fit = np.mean([r["fit_s"] for r in g])
        ratio = f"{fit / full_fit:.2f}" if full_fit and g[0]["method"] not in ("tfidf_lr", "frozen_lr") else ""
        cells = [key, str(len(g)), _ms([r["accuracy"] for r in g]), _ms([r["macro_f1"] for r in g])]
        if has_oos:
            cells.append(_ms([r.get("oos_recall") for r in g], "{:.3f}"))
        cells += [f"{fit:.0f}", ratio, f"{np.mean([r['peak_rss_mib'] for r in g]):.0f}",
                  f"{int(np.mean([r['trainable_params'] for r in g])):,}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plots(rows, tag):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    IMG.mkdir(parents=True, exist_ok=True)
    groups = defaultdict(list)
    for r in rows:
        groups[_label(r)].append(r)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, g in sorted(groups.items()):
        acc = [r["accuracy"] for r in g]
        a1.errorbar(np.mean([r["trainable_params"] for r in g]), np.mean(acc), yerr=np.std(acc), fmt="o", capsize=3, label=key)
    a1.set_xscale("log")
    a1.set_xlabel("trainable parameters (log)")
    a1.set_ylabel("test accuracy (mean ± std over seeds)")
    a1.legend(fontsize=7)
    names = sorted(groups, key=lambda k: np.mean([r["accuracy"] for r in groups[k]]))
    for i, key in enumerate(names):
        acc = [r["accuracy"] for r in groups[key]]
        a2.scatter([i] * len(acc), acc, s=18)
    a2.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    a2.set_ylabel("test accuracy, one dot per seed")
    fig.suptitle(tag)
    fig.tight_layout()
    path = IMG / f"{tag.replace(' ', '_').replace('/', '-')}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render():
    rows = _rows()
    if not rows:
        print("no results to render")
        return
    parts = [START, "", "_Rendered by `benchmarks/render.py` from `benchmarks/results/*.jsonl`; "
             "mean ± sample std over seeds; 'fit / full' is the fit-time ratio to `full` in the same table._", ""]
    keys = sorted({(r["config"], r["dataset"], r["regime"]) for r in rows})
    for config, dataset, regime in keys:
        sub = [r for r in rows if (r["config"], r["dataset"], r["regime"]) == (config, dataset, regime)]
        devices = sorted({r["device"] for r in sub})
        ex = sub[0]
        tag = f"{config} {dataset} {regime}"
        parts += [f"### {dataset}, {regime} (config `{config}`)", "",
                  f"{ex['n_train']} training texts, {ex['n_test']} test texts; device: {', '.join(devices)}; "
                  f"torch {ex['torch']}; estimator settings {json.dumps(ex.get('params') or {})}; "
                  f"seeds {sorted({r['seed'] for r in sub})}.", "", _table(sub), ""]
        path = _plots(sub, tag)
        parts += [f"![{tag}](img/{path.name})", ""]
    interp = _interpolation_rows()
    if interp:
        parts += ["### Weight interpolation between the probe and the finetune (`benchmarks/interpolation.py`)", "",
                  "Test accuracy, mean ± sample std over seeds, of one default fit per seed scored at both ends of "
                  "the line and at the point `a` chosen on validation; 'either/or' is the older rule (the finetune "
                  "unless the probe is better on validation).", "", _interpolation_table(interp), ""]
    dev = _dev_variants_table()
    if dev:
        parts += ["### Ways of ending a fit, on a dev split carved from the training set (`benchmarks/dev_variants.py`)", "",
                  "Dev accuracy, mean ± sample std over seeds; the official test split is not read. `default` is the "
                  "interpolated point fit chose on validation before the head refit; `refit_all` is that encoder with "
                  "the head refit on every labelled text (what `refit_head=True` keeps).", "", dev, ""]
    parts.append(END)
    block = "\n".join(parts)
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n## Strategy comparison\n\n" + block + "\n"
    DOC.write_text(text)
    print(f"rendered {len(rows)} runs into {DOC}")


if __name__ == "__main__":
    render()
