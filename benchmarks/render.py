"""Render the raw rows of benchmarks/results/ into the docs: every table and plot of measurements.

Each rendered block sits between ``<!-- rendered:NAME -->`` and ``<!-- /rendered:NAME -->`` in
README.md or a page of docs/, and is rewritten whole from the rows (``BLOCKS`` below); prose
around it is the docs' own. The package's reference tables (``REFERENCE_BLOCKS``: parameters,
strategies) use the same markers but are rendered by ``sksparseft._docs`` from the docstring and
the strategy classes; this module leaves them to it. ``python -m benchmarks.run --render-only``
runs both; the test suite fails when a block differs from what its rows give.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict

import numpy as np

from .common import RESULTS, ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
try:  # the package's own reference tables (rendered by it, not from rows)
    from sksparseft._docs import REFERENCE_BLOCKS, render_reference_tables
except ImportError:  # a package without them
    REFERENCE_BLOCKS, render_reference_tables = (), None
IMG = ROOT / "docs" / "img"
BLOCK = re.compile(r"(<!-- rendered:([a-z0-9_-]+) -->\n)(.*?)(<!-- /rendered:\2 -->)", re.S)
REFERENCE_NAMES = {"frozen_lr": "frozen-embedding LR", "tfidf_lr": "TF-IDF LR", "setfit": "SetFit"}


# ----------------------------------------------------------------------------- rows
def rows_by_file():
    """``{results file stem: [rows]}`` of every results file."""
    return {p.stem: [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
            for p in sorted(RESULTS.glob("*.jsonl"))}


def _compare_rows(files):
    return [r for rows in files.values() for r in rows if _is_compare(r)]


def _is_compare(row):
    # dev_screen rows name a method too, but score on a dev split (dev_accuracy), not on test.
    return "config" in row and "method" in row and "accuracy" in row


def at_current_defaults(rows):
    """Whether every fit of these rows ran the current fit: the contrastive stage first, the head refit last."""
    from sksparseft import TokenSparseClassifier

    stages = TokenSparseClassifier().contrastive_epochs
    fits = [r for r in rows if r.get("method") not in REFERENCE_NAMES]
    return bool(fits) and all(r.get("refit_head") and r.get("contrastive_epochs", 0) == stages for r in fits)


def provenance(rows):
    """Which code wrote these rows: the version and date each row carries (rows of 0.1.0 carry none)."""
    dated = sorted({f"sksparseft {r['version']} ({r['date']})" for r in rows if "version" in r})
    undated = [r for r in rows if "version" not in r]
    if undated:
        fits = [r for r in undated if r.get("method") not in REFERENCE_NAMES]
        dated.insert(0, "sksparseft 0.1.0 (2026-11-26)" if fits and all(r.get("refit_head") for r in fits) else
                     "a development build of 0.1.0 (2026-11-26) from before the head refit became the default")
    return " and ".join(dated)


def _run_key(row):
    return row.get("version"), row.get("date")


def newest_runs(rows):
    """The last row of each (method, dataset, regime, seed): a rerun supersedes, the raw file keeps both."""
    last = {}
    for r in rows:  # rows are in the order they were written
        last[(_label(r), r["dataset"], r["regime"], r["seed"])] = r
    return list(last.values())


def _ms(values, fmt="{:.4f}"):
    values = [v for v in values if v is not None]
    if not values:
        return ""
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(np.mean(values))} ± {fmt.format(np.std(values, ddof=1))}"


def _label(row):
    extra = {k: v for k, v in (row.get("params") or {}).items() if k != "max_epochs"}
    name = REFERENCE_NAMES.get(row["method"], row["method"])
    return name + (" " + " ".join(f"{k}={v}" for k, v in extra.items()) if extra else "")


# ----------------------------------------------------------------------------- comparisons
def _compare_table(rows):
    groups = defaultdict(list)
    for r in rows:
        groups[_label(r)].append(r)
    # Fit times compare only within one run of the code (same version and date: same machine and load).
    full_fits = defaultdict(list)
    for r in groups.get("full", []):
        full_fits[_run_key(r)].append(r["fit_s"])
    has_oos = any("oos_recall" in r for r in rows)
    mixed = len({_run_key(r) for r in rows}) > 1  # rows of several runs: say which wrote each
    head = "| method | seeds | accuracy | macro-F1 |" + (" OOS recall |" if has_oos else "") + \
        " fit s | fit / full | peak RSS MiB | trainable params |" + (" written |" if mixed else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for key in sorted(groups, key=lambda k: -np.mean([r["accuracy"] for r in groups[k]])):
        g = groups[key]
        fit = np.mean([r["fit_s"] for r in g])
        same_run = full_fits.get(_run_key(g[0])) if len({_run_key(r) for r in g}) == 1 else None
        ratio = f"{fit / np.mean(same_run):.2f}" if same_run and g[0]["method"] not in REFERENCE_NAMES else ""
        cells = [key, str(len(g)), _ms([r["accuracy"] for r in g]), _ms([r["macro_f1"] for r in g])]
        if has_oos:
            cells.append(_ms([r.get("oos_recall") for r in g], "{:.3f}"))
        cells += [f"{fit:.0f}", ratio, f"{np.mean([r['peak_rss_mib'] for r in g]):.0f}",
                  f"{int(np.mean([r['trainable_params'] for r in g])):,}"]
        if mixed:
            cells.append(", ".join(sorted({f"{r.get('version', '0.1.0')}, {r.get('date', '2026-11-26')}" for r in g})))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _plot(rows, tag):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    IMG.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG / f"{tag.replace(' ', '_')}.png", dpi=110, metadata={"Software": None})
    plt.close(fig)


def _comparisons(files, current, plots):
    by_table = defaultdict(list)
    for stem, rows in files.items():
        for r in rows:
            if _is_compare(r):
                by_table[(stem, r["dataset"], r["regime"])].append(r)
    out = []
    for (stem, dataset, regime), rows in sorted(by_table.items()):
        if at_current_defaults(rows) != current:
            continue
        rows = newest_runs(rows)
        ex = rows[0]
        devices = ", ".join(sorted({r["device"] for r in rows}))
        tag = f"{stem} {dataset} {regime}"
        out += [f"#### {dataset}, {regime} (`{stem}.jsonl`)", "",
                f"`python -m benchmarks.run --config {ex['config']}`{_tag_of(stem, ex['config'])}; written by "
                f"{provenance(rows)}; {ex['n_train']:,} training texts, {ex['n_test']:,} test texts; {devices}; "
                f"torch {ex['torch']}; settings {json.dumps(ex.get('params') or {})}; seeds "
                f"{sorted({r['seed'] for r in rows})}.", "", *_compare_table(rows), "",
                f"![{tag}](img/{tag.replace(' ', '_')}.png)", ""]
        if plots:
            _plot(rows, tag)
    return out


def _tag_of(stem, config):
    return f" `--tag {stem[len(config) + 1:]}`" if stem != config else ""


# ----------------------------------------------------------------------------- interpolation and dev splits
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
    groups = defaultdict(list)
    for r in files.get("dev_variants", []):
        groups[(r["dataset"], r["regime"])].append(r)
    lines = ["`python -m benchmarks.run --config dev_variants`. Dev accuracy (a split carved from the training "
             "set; the test split is not read), mean ± sample std over seeds. `default` is the point chosen on "
             "validation before the head refit; `refit_all` is what `refit_head=True` keeps.", "",
             "| dataset | regime | seeds | fit / dev texts | " + " | ".join(DEV_VARIANTS) + " | device |",
             "|---|---|---|---|" + "---|" * len(DEV_VARIANTS) + "---|"]
    for (dataset, regime), g in sorted(groups.items()):
        cells = [dataset, regime, str(len(g)), f"{g[0]['n_fit']} / {g[0]['n_dev']}"]
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


def _at_least(a, b):
    """``a >= b`` for mean accuracies: means over the same texts that are equal differ only by float noise."""
    return a >= b - 1e-9


def _above(a, b):
    """``a > b`` for mean accuracies (see :func:`_at_least`)."""
    return a > b + 1e-9


#: The speed screen's reference points (docs/benchmarks.md, "How the speed default is chosen").
SPEED_REFERENCES = {"default": "random_c2", "full": "full_c2", "frozen": "frozen_lr"}


def _dev_groups(files, config):
    """``{(dataset, variant): [rows with a dev accuracy]}`` of a dev-screen config's results file.

    A fit run again (same dataset, variant and seed) counts once, as its latest row: the earlier
    rows stay in the file, and the page says why the fit was run again.
    """
    latest = {}
    for r in files.get(config, []):
        if r.get("dev_accuracy") is not None:
            latest[(r["dataset"], r["variant"], r["seed"])] = r
    groups = defaultdict(list)
    for (dataset, variant, _), r in latest.items():
        groups[(dataset, variant)].append(r)
    return groups


def _screen_heading(config, dataset, rows, seconds):
    """The heading and provenance lines of one dataset's table of a dev-screen config."""
    ex = rows[0]
    regime = "10-shot" if ex.get("regime", "10shot") == "10shot" else "all the training data but the dev part"
    return [f"#### {dataset}, {regime}: {ex['n_fit']:,} fit texts, {ex['n_dev']:,} dev texts", "",
            f"`python -m benchmarks.run --config {config}`; written by {provenance(rows)}; {ex['device']}, "
            f"torch {ex['torch']}. {seconds}", ""]


def _speed_screen(files, plots, config="speed_screen",
                  seconds="with other work on the CPU at times (indicative only; the rule decides on idle timings).",
                  full_data=False):
    """The speed screen: each candidate against the default of its version, `full` and frozen LR, with the rule's tests.

    ``full_data``: the rule's tests with all the training data (at least `full`, above frozen LR and
    the majority class; the default is not among them).
    """
    groups = _dev_groups(files, config)
    lines = []
    for dataset in sorted({d for d, _ in groups}):
        def accs(variant):
            return [r["dev_accuracy"] for r in groups.get((dataset, variant), [])]

        means = {v: np.mean(accs(v)) for d, v in groups if d == dataset}
        ref = {k: means.get(v) for k, v in SPEED_REFERENCES.items()}
        rows = sum((g for (d, _), g in groups.items() if d == dataset), [])
        lines += _screen_heading(config, dataset, rows, f"Fit seconds: median over the seeds run, {seconds}")
        lines += ["| variant | seeds | dev accuracy | vs default | vs full | vs frozen LR | accuracy tests of the rule | fit s |",
                  "|---|---|---|---|---|---|---|---|"]
        for variant in sorted(means, key=lambda v: -means[v]):
            g = groups[(dataset, variant)]
            m = means[variant]
            tests = ""
            baselines = {"majority", "tfidf_lr", *SPEED_REFERENCES.values()}
            if full_data and variant not in baselines:
                # The rule: at least `full` and above frozen LR; on the drug reviews, above frozen LR and the majority.
                needed = ("frozen", "majority") if dataset == "drugreviews" else ("frozen", "full")
                bars = {"frozen": ref["frozen"], "full": ref["full"], "majority": means.get("majority")}
                if all(bars[k] is not None for k in needed):
                    ok = all(_above(m, bars[k]) if k != "full" else _at_least(m, bars[k]) for k in needed)
                    tests = ("pass" if ok else "fail") + ("" if len(g) == 3 else f" ({len(g)} of 3 seeds)")
            elif variant not in baselines and None not in ref.values():
                ok = _at_least(m, ref["full"]) and _at_least(m, ref["default"] - 0.003) and _above(m, ref["frozen"])
                tests = ("pass" if ok else "fail") + ("" if len(g) == 3 else f" ({len(g)} of 3 seeds)")
            lines.append("| " + " | ".join([
                variant, ", ".join(str(r["seed"]) for r in g), _ms(accs(variant)),
                *(f"{m - ref[k]:+.4f}" if ref[k] is not None else "" for k in ("default", "full", "frozen")),
                tests, f"{np.median([r['fit_s'] for r in g]):.0f}"]) + " |")
        lines.append("")
    return lines or [f"No rows yet: `python -m benchmarks.run --config {config}`.", ""]


#: The precision screen's pairs: (bf16 variant, its float32 twin) (docs/benchmarks.md, "Does bf16 pay on the CPU?").
PRECISION_PAIRS = (("random_c2_bf16", "random_c2"), ("layers_c2_cached_bf16", "layers_c2_cached"))


def _precision_screen(files, plots):
    """The speed screen's table for the precision screen, then each bf16 variant against its float32 twin."""
    lines = _speed_screen(files, plots, "precision_screen", "one fit at a time, nothing else on the CPU.")
    groups = _dev_groups(files, "precision_screen")
    pairs = []
    for bf16, fp32 in PRECISION_PAIRS:
        for dataset in sorted({d for d, _ in groups}):
            a, b = groups.get((dataset, bf16), []), groups.get((dataset, fp32), [])
            if a and b:
                gain = np.mean([r["dev_accuracy"] for r in a]) - np.mean([r["dev_accuracy"] for r in b])
                ratio = np.median([r["fit_s"] for r in a]) / np.median([r["fit_s"] for r in b])
                holds = "yes" if _at_least(gain, -0.003) and ratio <= 0.75 else "no"
                pairs.append(f"| `{bf16}` vs `{fp32}` | {dataset} | {len(a)}, {len(b)} | {gain:+.4f} | {ratio:.2f} | "
                             f"{holds} |")
    if pairs:
        lines += ["Each bf16 variant against its float32 twin (mean dev accuracy difference; ratio of median fit "
                  "seconds; the precision rule's test: within 0.3 points at at most 0.75x, on both datasets):", "",
                  "| pair | dataset | seeds | accuracy | fit seconds | within 0.3 points at <= 0.75x |",
                  "|---|---|---|---|---|---|", *pairs, ""]
    return lines



def _fast_full(files, plots):
    """The speed rule's full-data tests, then bf16 against float32 by the all-data precision test."""
    lines = _speed_screen(files, plots, "fast_full", "one fit at a time, other work on the CPU at times (indicative "
                          "only; the page says when); the float32 default (`random_c2`) only where a row shows it.",
                          full_data=True)
    groups = _dev_groups(files, "fast_full")
    pairs = []
    for bf16, fp32 in PRECISION_PAIRS:
        for dataset in sorted({d for d, _ in groups}):
            a = {r["seed"]: r["dev_accuracy"] for r in groups.get((dataset, bf16), [])}
            b = {r["seed"]: r["dev_accuracy"] for r in groups.get((dataset, fp32), [])}
            seeds = sorted(set(a) & set(b))  # the test compares the same seeds only
            if not seeds:
                continue
            x, y = [a[s] for s in seeds], [b[s] for s in seeds]
            gain = np.mean(x) - np.mean(y)
            if dataset == "drugreviews":
                spread = max(np.std(x, ddof=1), np.std(y, ddof=1)) if len(seeds) > 1 else 0.0
                bars = [np.mean([r["dev_accuracy"] for r in groups.get((dataset, v), [])] or [np.inf])
                        for v in ("frozen_lr", "majority")]
                holds = _at_least(gain, -spread) and all(_above(np.mean(x), bar) for bar in bars)  # "within": not lower by more
                test = f"within {spread:.4f}, above frozen LR and majority"
            else:
                holds, test = _at_least(gain, -0.003), "within 0.3 points"
            pairs.append(f"| `{bf16}` vs `{fp32}` | {dataset} | {', '.join(map(str, seeds))} | {gain:+.4f} | "
                         f"{test}: {'yes' if holds else 'no'} |")
    if pairs:
        lines += ["Each bf16 variant against its float32 twin on the seeds both have (mean dev accuracy difference; "
                  "the all-data precision test of 'Does bf16 pay on the CPU?'):", "",
                  "| pair | dataset | seeds | accuracy | test |", "|---|---|---|---|---|", *pairs, ""]
    return lines


#: The package whose sparse path the `kernels` rows compare against, run in the same queue ("before").
KERNELS_BEFORE = "0.7.3"


def _before_and_after(files, config):
    """This version's rows (as a files dict) and the KERNELS_BEFORE package's, grouped by (dataset, variant)."""
    rows = files.get(config, [])
    now = {config: [r for r in rows if r.get("version") != KERNELS_BEFORE]}
    return now, _dev_groups({config: [r for r in rows if r.get("version") == KERNELS_BEFORE]}, config)


def _kernels(files, plots):
    """The sparse-path screen: the speed table of this package's rows, then the default before and after."""
    now, then = _before_and_after(files, "kernels")
    lines = _speed_screen(now, plots, "kernels", "one fit at a time, nothing else on the CPU.")
    after = _dev_groups(now, "kernels")
    table = []
    for (dataset, variant), old in sorted(then.items()):
        new = after.get((dataset, variant), [])
        if not new:
            continue
        for label, g in ((KERNELS_BEFORE, old), (new[0]["version"], new)):
            stage = {k: np.median([r["stages"].get(k, 0.0) for r in g]) for k in ("contrastive", "training",
                                                                                     "interpolation")}
            table.append(f"| {dataset} | `{variant}`, {label} | {', '.join(str(r['seed']) for r in g)} | "
                         f"{_ms([r['dev_accuracy'] for r in g])} | {np.median([r['fit_s'] for r in g]):.1f} | "
                         + " | ".join(f"{v:.1f}" for v in stage.values()) + " |")
        ratio = np.median([r["fit_s"] for r in new]) / np.median([r["fit_s"] for r in old])
        table.append(f"| {dataset} | ratio | | | {ratio:.2f}x | | | |")
    if table:
        lines += [f"The default in bf16 fit by sksparseft {KERNELS_BEFORE} and by the version named, in one queue "
                  f"({KERNELS_BEFORE}'s fits right after this version's of the same variant; medians over the seeds; stage seconds from each "
                  "fit's `fit_stages_`; ratio: the newer median over the older):", "",
                  "| dataset | fit | seeds | dev accuracy | fit s | contrastive s | training s | interpolation s |",
                  "|---|---|---|---|---|---|---|---|", *table, ""]
    return lines


def _kernels_full(files, plots):
    """The sparse path with all the data, then each fit beside the older package's fit of the same split."""
    now, then = _before_and_after(files, "kernels_full")
    lines = _speed_screen(now, plots, "kernels_full", "one fit at a time, nothing else on the CPU.", full_data=True)
    table = []
    for (dataset, variant), g in sorted(_dev_groups(now, "kernels_full").items()):
        old = {r["seed"]: r for r in then.get((dataset, variant), [])}
        for r in sorted(g, key=lambda r: r["seed"]):
            if r["seed"] in old:
                o = old[r["seed"]]
                table.append(f"| {dataset} | `{variant}` | {r['seed']} | {o['dev_accuracy']:.4f} | "
                             f"{r['dev_accuracy']:.4f} | {o['fit_s']:.0f} | {r['fit_s']:.0f} | "
                             f"{r['fit_s'] / o['fit_s']:.2f}x |")
    if table:
        lines += [f"Each fit beside sksparseft {KERNELS_BEFORE}'s fit of the same split and seed, run after the "
                  "others in the same queue:", "",
                  f"| dataset | fit | seed | dev accuracy, {KERNELS_BEFORE} | dev accuracy, {now['kernels_full'][0]['version']} | "
                  f"fit s, {KERNELS_BEFORE} | fit s, {now['kernels_full'][0]['version']} | ratio |",
                  "|---|---|---|---|---|---|---|---|", *table, ""]
    return lines


#: The references of the screens rendered by ``_ce_screen``.
SCREEN_REFERENCES = {"default": "random_c2_bf16", "full": "full_c2", "frozen": "frozen_lr", "majority": "majority"}
#: Each such screen's candidates, and whether "at least full" is one of its rule's tests (docs/benchmarks.md:
#: "Can the cross-entropy epochs stop at the top blocks?", "Can the default run fewer epochs?").
SCREENS = {"ce_screen": {"candidates": ("random_ce4_bf16", "random_ce4_c1_bf16"), "full_is_test": True},
           "epoch_screen": {"candidates": ("random_c1_bf16", "random_e3_bf16", "random_c1_e3_bf16"), "full_is_test": False},
           "cap_screen": {"candidates": ("random_s128_bf16",), "full_is_test": False},
           "patience_screen": {"candidates": ("random_p2_bf16",), "full_is_test": False}}


def _ce_tests(dataset, full_data, m, ref, spreads, full_is_test=True):
    """The rule's accuracy tests of one candidate on one dataset, as (name, passed) pairs."""
    if not full_data:
        return [("at least full", _at_least(m, ref["full"])) for _ in range(full_is_test)] + [
            ("within 0.3 of the default", _at_least(m, ref["default"] - 0.003)), ("above frozen LR", _above(m, ref["frozen"]))]
    if dataset == "drugreviews":
        spread = max(spreads)
        return [(f"not below the default by more than {spread:.4f}", _at_least(m, ref["default"] - spread)),
                ("above frozen LR", _above(m, ref["frozen"])), ("above the majority class", _above(m, ref["majority"]))]
    return [("within 0.3 of the default", _at_least(m, ref["default"] - 0.003)), ("above frozen LR", _above(m, ref["frozen"]))]


def _ce_screen(files, plots, config="ce_screen"):
    """A screen of ``SCREENS`` (10-shot, or its ``_full`` config): every variant, the candidates' tests and seconds against the default."""
    full_data = config.endswith("_full")
    screen = SCREENS[config.removesuffix("_full")]
    groups = _dev_groups(files, config)
    lines = []
    for dataset in sorted({d for d, _ in groups}):
        accs = {v: [r["dev_accuracy"] for r in g] for (d, v), g in groups.items() if d == dataset}
        seconds = {v: np.median([r["fit_s"] for r in g]) for (d, v), g in groups.items() if d == dataset}
        ref = {k: (np.mean(accs[v]) if v in accs else None) for k, v in SCREEN_REFERENCES.items()}
        rows = sum((g for (d, _), g in groups.items() if d == dataset), [])
        lines += _screen_heading(config, dataset, rows, "Fit seconds: median over the seeds run, one fit at a time, "
                                 "nothing else on the CPU; x default: that median over the default's.")
        lines += ["| variant | seeds | dev accuracy | vs default | vs frozen LR | tests of the rule | fit s | x default |",
                  "|---|---|---|---|---|---|---|---|"]
        for variant in sorted(accs, key=lambda v: -np.mean(accs[v])):
            m, tests = np.mean(accs[variant]), ""
            needed = ("default", "frozen") + (("majority",) if dataset == "drugreviews" else () if full_data else ("full",))
            if variant in screen["candidates"] and all(ref[k] is not None for k in needed):
                spreads = [np.std(accs[v], ddof=1) if len(accs[v]) > 1 else 0.0 for v in (variant, SCREEN_REFERENCES["default"])]
                failed = [name for name, ok in _ce_tests(dataset, full_data, m, ref, spreads, screen["full_is_test"]) if not ok]
                tests = "pass" if not failed else "fail: " + "; ".join(failed)
                if not full_data and not screen["full_is_test"]:
                    tests += "; at least full: " + ("yes" if _at_least(m, ref["full"]) else "no") + " (reported, not a test)"
                # A verdict counts once the candidate and every reference it is tested against have the same seeds.
                seeds = [{r["seed"] for r in groups[(dataset, v)]} for v in (variant, *(SCREEN_REFERENCES[k] for k in needed))]
                complete = all(s == seeds[0] for s in seeds) and (len(seeds[0]) == 3 or full_data and dataset != "drugreviews")
                tests += "" if complete else " (not yet on every seed of the candidate and its references)"
            default_s = seconds.get(SCREEN_REFERENCES["default"])
            lines.append("| " + " | ".join([
                variant, ", ".join(str(r["seed"]) for r in groups[(dataset, variant)]), _ms(accs[variant]),
                *(f"{m - ref[k]:+.4f}" if ref[k] is not None else "" for k in ("default", "frozen")),
                tests, f"{seconds[variant]:.0f}", f"{seconds[variant] / default_s:.2f}x" if default_s else ""]) + " |")
        lines.append("")
    return lines or [f"No rows yet: `python -m benchmarks.run --config {config}`.", ""]


def replay_stop(valid_acc, patience, threshold=1e-4):
    """``(last epoch run, best epoch)`` of early stopping replayed on per-epoch scores (epoch 1 first).

    skorch's ``EarlyStopping`` rule as the estimator sets it: a score improves when it is above the
    best so far by more than ``threshold`` times the best; training stops after ``patience`` epochs
    in a row without improvement, or when the scores end (``max_epochs``).
    """
    best, best_epoch, misses = None, 0, 0
    for epoch, score in enumerate(valid_acc, 1):
        if best is None or score > best + threshold * best:
            best, best_epoch, misses = score, epoch, 0
        else:
            misses += 1
            if misses == patience:
                return epoch, best_epoch
    return len(valid_acc), best_epoch


#: The patience rule's candidate and its patience, the default's (docs/benchmarks.md: "Does early
#: stopping need three epochs of patience?"), and the all-data rows its stop is replayed on.
PATIENCE_RULE = {"candidate": ("random_p2_bf16", 2), "default": ("random_c2_bf16", 3), "replayed_on": "cap_screen_full"}


def _replay_table(files, configs, short, long, names=("patience 2", "patience 3", "patience 3's")):
    """Fit by fit, the ``short``-patience fit against the ``long``-patience fit's trace replayed at the short patience.

    ``short`` and ``long`` are ``(variant, patience)``; ``names``: what the header calls the short fit,
    the long one, and the long one's trace. Returns the table's lines, the epochs each ran in all, and
    whether the replay held on every fit.
    """
    (cand, p_cand), (default, p_default) = short, long
    s_name, l_name, l_trace = names
    lines = [f"| dataset | seed | {l_name}: epochs run (best) | {s_name}: replayed stop (best) | {s_name}: epochs run | "
             f"same model expected | dev accuracy: {l_name}, {s_name} | trace is {l_trace}, cut | replay holds |",
             "|---|---|---|---|---|---|---|---|---|"]
    epochs, all_hold = {cand: 0, default: 0}, True
    for config in configs:
        groups = _dev_groups(files, config)
        for dataset in sorted({d for d, _ in groups}):
            by_seed = {v: {r["seed"]: r for r in groups.get((dataset, v), [])} for v in (cand, default)}
            for seed in sorted(set(by_seed[cand]) & set(by_seed[default])):
                c, d = by_seed[cand][seed], by_seed[default][seed]
                trace = d["valid_acc"][1:]
                run, best = replay_stop(trace, p_default)
                stop, best_c = replay_stop(trace, p_cand)
                same = best_c == best
                prefix = c["valid_acc"] == d["valid_acc"][: stop + 1]
                holds = run == d["epochs"] and stop == c["epochs"] and prefix and (
                    not same or c["dev_accuracy"] == d["dev_accuracy"])
                all_hold &= holds
                epochs[cand] += c["epochs"]
                epochs[default] += d["epochs"]
                lines.append(f"| {dataset} | {seed} | {d['epochs']} ({best}) | {stop} ({best_c}) | {c['epochs']} | "
                             f"{'yes' if same else 'no'} | {d['dev_accuracy']:.4f}, {c['dev_accuracy']:.4f} | "
                             f"{'yes' if prefix else 'no'} | {'yes' if holds else 'no'} |")
    return (lines if len(lines) > 2 else []), epochs, all_hold


def _patience_replay(files, plots):
    """The patience rule's checks: each fit's replayed stop against the candidate's own run, and the all-data replay."""
    (cand, p_cand), (default, p_default) = PATIENCE_RULE["candidate"], PATIENCE_RULE["default"]
    lines, epochs, _ = _replay_table(files, ("patience_screen", "patience_screen_full"), PATIENCE_RULE["candidate"],
                                     PATIENCE_RULE["default"], ("candidate", "default", "the default's"))
    if not lines:
        return ["No rows yet: `python -m benchmarks.run --config patience_screen`.", ""]
    lines += ["", f"Cross-entropy epochs run over these fits: the candidate {epochs[cand]}, the default {epochs[default]}.",
              "", f"With all the training data, replayed on the default's traces in `{PATIENCE_RULE['replayed_on']}`:", "",
              "| dataset | seed | version | epochs run (best) | replayed stop at patience 2 (best) | same model | "
              "training s | epochs saved |", "|---|---|---|---|---|---|---|---|"]
    for (dataset, variant), rows in sorted(_dev_groups(files, PATIENCE_RULE["replayed_on"]).items()):
        for r in rows if variant == default else []:
            run, best = replay_stop(r["valid_acc"][1:], p_default)
            stop, best_c = replay_stop(r["valid_acc"][1:], p_cand)
            lines.append(f"| {dataset} | {r['seed']} | {r['version']} | {r['epochs']} ({best}) | {stop} ({best_c}) | "
                         f"{'yes' if best_c == best else 'no'} | {r['stages']['training']:.0f} | {r['epochs'] - stop} |")
    return lines + [""]


#: The all-data check of the patience default (docs/benchmarks.md: "Does patience 2 hold with all the
#: training data?"): the default of 0.7.8 and the same fit at 0.7.7's patience.
PATIENCE_CHECK = {"config": "patience_check_full", "short": ("random_p2_bf16", 2), "long": ("random_p3_bf16", 3)}


def _patience_check(files, plots):
    """The all-data patience check: each dataset's variants, the rule's tests, then the fit-by-fit replay."""
    config, (short, _), (long, _) = PATIENCE_CHECK["config"], PATIENCE_CHECK["short"], PATIENCE_CHECK["long"]
    groups = _dev_groups(files, config)
    if not groups:
        return [f"No rows yet: `python -m benchmarks.run --config {config}`.", ""]
    table, epochs, replay_holds = _replay_table(files, (config,), PATIENCE_CHECK["short"], PATIENCE_CHECK["long"])
    lines = []
    for dataset in sorted({d for d, _ in groups}):
        g = {v: rows for (d, v), rows in groups.items() if d == dataset}
        accs = {v: [r["dev_accuracy"] for r in rows] for v, rows in g.items()}
        seconds = {v: np.median([r["fit_s"] for r in rows]) for v, rows in g.items()}
        lines += _screen_heading(config, dataset, sum(g.values(), []), "Fit seconds: median over the seeds run, one "
                                 "fit at a time, nothing else on the CPU; x patience 3: that median over patience 3's.")
        lines += ["| variant | seeds | dev accuracy | vs patience 3 | vs frozen LR | cross-entropy epochs | fit s | "
                  "x patience 3 |", "|---|---|---|---|---|---|---|---|"]
        ref = {v: np.mean(accs[v]) if v in accs else None for v in (long, "frozen_lr")}
        for variant in sorted(accs, key=lambda v: -np.mean(accs[v])):
            ran = [r["epochs"] for r in g[variant] if r.get("epochs") is not None]
            lines.append("| " + " | ".join([
                variant, ", ".join(str(r["seed"]) for r in g[variant]), _ms(accs[variant]),
                *(f"{np.mean(accs[variant]) - ref[v]:+.4f}" if ref[v] is not None else "" for v in (long, "frozen_lr")),
                ", ".join(map(str, ran)), f"{seconds[variant]:.0f}",
                f"{seconds[variant] / seconds[long]:.2f}x" if long in seconds else ""]) + " |")
        seeds = [{r["seed"] for r in g.get(v, [])} for v in (short, long, "frozen_lr")]
        if all(s == {0, 1, 2} for s in seeds):
            m = np.mean(accs[short])
            tests = [("within 0.3 points of patience 3", _at_least(m, ref[long] - 0.003)),
                     ("above frozen LR", _above(m, ref["frozen_lr"]))]
            failed = [name for name, ok in tests if not ok]
            lines += ["", f"Tests of the rule on {dataset}: " + ("pass" if not failed else "fail: " + "; ".join(failed)) + "."]
        lines.append("")
    if table:
        lines += ["Fit by fit (cross-entropy epochs; \"best\" is the epoch whose weights the fit restores, replayed "
                  "from patience 3's `valid_acc` trace):", "", *table, "",
                  f"Cross-entropy epochs run over these fits: patience 2 {epochs[short]}, patience 3 {epochs[long]}; "
                  f"the replay holds on every fit: {'yes' if replay_holds else 'no'}.", ""]
    return lines


def _gap(pair):
    """A mean difference and its seed std, as the rule's tables show them."""
    return "" if pair[0] is None else f"{pair[0]:+.4f} ({pair[1]:.4f})"


#: The group_features rule's pairs: (the embedding beside the token groups, its label-blind control).
GROUP_FEATURE_PAIRS = (("frozen_groups_lr", "frozen_freq_lr"), ("frozen_groups_x10_lr", "frozen_freq_x10_lr"))


def _group_features(files, plots):
    """The token groups as features: each variant per dataset, then the rule's tests."""
    groups = _dev_groups(files, "group_features")
    if not groups:
        return ["No rows yet: `python -m benchmarks.run --config group_features`.", ""]
    datasets = sorted({d for d, _ in groups})
    stats = {k: (np.mean([r["dev_accuracy"] for r in g]), np.std([r["dev_accuracy"] for r in g], ddof=1)
                 if len(g) > 1 else np.nan, len(g)) for k, g in groups.items()}
    lines = []
    for dataset in datasets:
        rows = sum((g for (d, _), g in groups.items() if d == dataset), [])
        ex = rows[0]
        lines += [f"#### {dataset}: {ex['split']}, {ex['n_dev']:,} dev texts", "",
                  f"`python -m benchmarks.run --config group_features`; written by {provenance(rows)}; {ex['device']}, "
                  f"torch {ex['torch']}; logistic regression (C=1; TF-IDF alone C=10), no finetuning.", "",
                  "| variant | seeds | dev accuracy | vs frozen LR | n-grams |", "|---|---|---|---|---|"]
        base = stats.get((dataset, "frozen_lr"), (None,))[0]
        for (d, v) in sorted((k for k in groups if k[0] == dataset), key=lambda k: -stats[k][0]):
            g = groups[(d, v)]
            lines.append("| " + " | ".join([
                v, ", ".join(str(r["seed"]) for r in g), _ms([r["dev_accuracy"] for r in g]),
                f"{stats[(d, v)][0] - base:+.4f}" if base is not None else "",
                _ms([r["n_groups"] for r in g if r.get("n_groups") is not None], "{:.0f}")]) + " |")
        lines.append("")
    lines += ["The rule's tests per pair (mean differences; the larger seed std of each pair in brackets):", "",
              "| groups | drug reviews: vs frozen LR | drug reviews: vs label-blind control | intent sets: vs frozen LR | "
              "verdict |", "|---|---|---|---|---|"]
    for variant, control in GROUP_FEATURE_PAIRS:
        def diff(dataset, other):
            a, b = stats.get((dataset, variant)), stats.get((dataset, other))
            if a is None or b is None:
                return None, None
            return a[0] - b[0], max(a[1], b[1])
        drug = [diff("drugreviews", "frozen_lr"), diff("drugreviews", control)]
        intents = [(d, diff(d, "frozen_lr")) for d in datasets if d != "drugreviews"]
        complete = all(stats.get(k, (0, 0, 0))[2] == 3 for k in [("drugreviews", variant), ("drugreviews", control)]
                       + [(d, v) for d, _ in intents for v in (variant, "frozen_lr")]) and len(intents) == 2
        ok = (complete and all(g is not None and g > s for g, s in drug)
              and all(g is not None and g >= -0.003 for _, (g, _) in intents))
        lines.append(f"| `{variant}` | {_gap(drug[0])} | {_gap(drug[1])} | "
                     + ", ".join(f"{d} {g:+.4f}" for d, (g, _) in intents if g is not None)
                     + f" | {'earns a place' if ok else ('does not' if complete else 'not decided: seeds missing')} |")
    return lines + [""]


#: The token_structure screen's pairs: the token-driven variant and its random control of the same size.
TOKEN_PAIRS = {"rows": ("token_rows_top3", "random_rows_top3"), "entries": ("token_top3", "random_top3")}


def _token_structure(files, plots):
    """The token groups' choice in a structured budget against random structure, with the rule's verdicts."""
    groups = _dev_groups(files, "token_structure")
    if not groups:
        return ["No rows yet: `python -m benchmarks.run --config token_structure`.", ""]
    lines, stats = [], {}
    for dataset in sorted({d for d, _ in groups}):
        rows = sum((g for (d, _), g in groups.items() if d == dataset), [])
        lines += _screen_heading("token_structure", dataset, rows,
                                 "Fit seconds: median over the seeds, other work on the CPU at times (indicative only).")
        lines += ["| variant | seeds | dev accuracy | vs default | vs full | vs frozen LR | fit s |", "|---|---|---|---|---|---|---|"]
        means = {v: np.mean([r["dev_accuracy"] for r in g]) for (d, v), g in groups.items() if d == dataset}
        for (d, v), g in groups.items():
            if d == dataset:
                stats[(d, v)] = (means[v], np.std([r["dev_accuracy"] for r in g], ddof=1) if len(g) > 1 else np.nan,
                                 len(g))
        for variant in sorted(means, key=lambda v: -means[v]):
            g = groups[(dataset, variant)]
            lines.append("| " + " | ".join([
                variant, ", ".join(str(r["seed"]) for r in g), _ms([r["dev_accuracy"] for r in g]),
                *(f"{means[variant] - means[ref]:+.4f}" if ref in means else "" for ref in SPEED_REFERENCES.values()),
                f"{np.median([r['fit_s'] for r in g]):.0f}"]) + " |")
        lines.append("")
    lines += ["The rule's verdict per pair (the token-driven mean minus the random one, and the larger seed std):", ""]
    datasets = sorted({d for d, _ in groups})
    for pair, (token, rand) in TOKEN_PAIRS.items():
        parts, wins = [], []
        for d in datasets:
            if (d, token) not in stats or (d, rand) not in stats:
                parts.append(f"{d}: not run")
                wins.append(None)
                continue
            (mt, st, nt), (mr, sr, nr) = stats[(d, token)], stats[(d, rand)]
            spread = max(st, sr)
            parts.append(f"{d} {mt - mr:+.4f} (spread {spread:.4f})")
            wins.append(None if min(nt, nr) < 3 else (mt - mr) > spread)
        verdict = ("not decided (a variant lacks seeds)" if None in wins else
                   "the token-driven choice wins" if all(wins) else "no win: random structure of the same size is as good")
        lines.append(f"- {pair}: " + "; ".join(parts) + f". {verdict}.")
    lines.append("")
    return lines


SEARCH_RUNS = {"default_fit": "one default fit", "full_fit": "one `full` fit", "frozen_lr": "frozen-embedding LR",
               "search": "GridSearchCV, no memory", "search_memory": "GridSearchCV, memory (empty at the start)"}


def _search(files, plots, config="search"):
    """What a cross-validated search costs, with and without memory, in units of one default fit."""
    rows = [r for r in files.get(config, []) if r.get("dev_accuracy") is not None]
    if not rows:
        return [f"No rows yet: `python -m benchmarks.run --config {config}`.", ""]
    lines = []
    for (dataset, seed) in sorted({(r["dataset"], r["seed"]) for r in rows}):
        runs = {r["run"]: r for r in rows if (r["dataset"], r["seed"]) == (dataset, seed)}  # the last row of each
        unit = runs.get("default_fit", {}).get("fit_s")
        ex = next(iter(runs.values()))
        grid = next((r["grid"] for r in runs.values() if r.get("grid")), None)
        lines += [f"#### {dataset}, 10-shot, seed {seed}: {ex['n_fit']:,} fit texts, {ex['n_dev']:,} dev texts", "",
                  f"`python -m benchmarks.run --config {config}`; written by {provenance(list(runs.values()))}; "
                  f"{ex['device']}, torch {ex['torch']}; one run each, one after the other, nothing else on the CPU."
                  + (f" Grid: `{json.dumps(grid)}`, 5-fold stratified, `n_jobs=1`." if grid else ""), "",
                  "| run | fits | seconds | x one default fit | dev accuracy | chosen | memory folder |",
                  "|---|---|---|---|---|---|---|"]
        for name in [n for n in SEARCH_RUNS if n in runs]:
            r = runs[name]
            chosen = ", ".join(f"{k}={v}" for k, v in (r.get("best_params") or {}).items())
            folder = (f"{r['memory_files']:,} files, {r['memory_bytes'] / 2**20:.1f} MiB"
                      if r.get("memory_files") is not None else "")
            lines.append("| " + " | ".join([
                SEARCH_RUNS[name], str(r.get("n_fits", 1)), f"{r['fit_s']:.0f}",
                f"{r['fit_s'] / unit:.1f}" if unit else "", f"{r['dev_accuracy']:.4f}", chosen, folder]) + " |")
        lines.append("")
    return lines


#: The stages of a fit, in the order they run, as the main job's table shows them.
MAIN_JOB_STAGES = ("linear_probe", "contrastive", "training", "interpolation", "head_refit")


def _job_name(method):
    return REFERENCE_NAMES.get(method, "random (the default)" if method == "random" else method)


def _version_key(row):
    return tuple(int(p) for p in row.get("version", "0").split(".") if p.isdigit())


def _by_method(rows):
    """``{name: its rows, by seed}``: each method over the seeds it ran, at the newest version that ran it
    (a rerun supersedes), and the default's rows of older versions beside it, named by their version."""
    newest = {}
    for r in rows:
        newest[r["method"]] = max(newest.get(r["method"], ()), _version_key(r))
    groups = defaultdict(list)
    for r in newest_runs(sorted(rows, key=lambda r: r["seed"])):
        if _version_key(r) == newest[r["method"]]:
            groups[_job_name(r["method"])].append(r)
    for r in newest_runs([r for r in sorted(rows, key=lambda r: r["seed"]) if r["method"] == "random"
                          and _version_key(r) < newest["random"]]):
        groups[f"random ({r['version']}'s default)"].append(r)
    return groups


def _environment(row):
    """What a row's seconds depend on besides the machine: the version and the libraries it ran with."""
    return row.get("version"), json.dumps(row.get("libraries"), sort_keys=True)


def _main_job(files, plots):
    """The README's main job at the defaults of the version that ran it: test accuracy, fit seconds and where
    they go, beside the others."""
    rows = [r for r in files.get("main_job", []) if "accuracy" in r]
    if not rows:
        return ["No rows yet: `python -m benchmarks.run --config main_job`.", ""]
    lines = []
    for dataset in sorted({r["dataset"] for r in rows}):
        sub = [r for r in rows if r["dataset"] == dataset]
        ex = sub[0]
        groups = _by_method(sub)
        full = np.mean([r["fit_s"] for r in groups["full"]]) if groups.get("full") else None
        full_runs = {_environment(r) for r in groups.get("full", [])}
        sub = sum(groups.values(), [])
        lines += [f"#### {dataset}, all {ex['n_train']:,} training texts, {ex['n_test']:,} test texts", "",
                  f"`python -m benchmarks.run --config main_job`; written by {provenance(sub)}; {ex['device']}, "
                  f"torch {ex['torch']}; each fit in a fresh process, one after the other, at its own defaults "
                  "(`precision=\"auto\"`: the precision column says what it resolved to). Accuracy: mean ± sample "
                  "std over the seeds a method ran; seconds: means over those seeds (stage columns too; `other` is "
                  "the rest of the fit: loading, token groups, selection). x full: only beside `full` rows of the "
                  "same version and libraries (the CPU's speed moves with them).", "",
                  "| method | version | seeds | precision | test accuracy | macro-F1 | fit s | x full | "
                  + " | ".join(MAIN_JOB_STAGES) + " | other | peak RSS MiB |",
                  "|---" * (10 + len(MAIN_JOB_STAGES)) + "|"]
        for name, g in sorted(groups.items(), key=lambda kv: -np.mean([r["accuracy"] for r in kv[1]])):
            fit = g[0]["method"] not in REFERENCE_NAMES
            stages = [r.get("stages") or {} for r in g]
            staged = [np.mean([st.get(k, 0.0) for st in stages]) if fit else None for k in MAIN_JOB_STAGES]
            other = np.mean([sum(v for k, v in st.items() if k not in MAIN_JOB_STAGES) for st in stages]) if fit else None
            seconds = np.mean([r["fit_s"] for r in g])
            lines.append("| " + " | ".join([
                name, ", ".join(sorted({r.get("version", "") for r in g})), ", ".join(str(r["seed"]) for r in g),
                ", ".join(sorted({r.get("precision_used", "") for r in g})) if fit else "",
                _ms([r["accuracy"] for r in g]), _ms([r["macro_f1"] for r in g]), f"{seconds:.0f}",
                f"{seconds / full:.2f}x" if full and fit and {_environment(r) for r in g} == full_runs else "",
                *("" if v is None else f"{v:.0f}" for v in staged), "" if other is None else f"{other:.0f}",
                f"{np.mean([r['peak_rss_mib'] for r in g]):.0f}"]) + " |")
        lines.append("")
    return lines


def _processes(files, plots):
    """The default fit in one process and data-parallel over several: dev accuracy over seeds, seconds."""
    rows = [r for r in files.get("processes", []) if r.get("dev_accuracy") is not None]
    if not rows:
        return ["No rows yet: `python -m benchmarks.run --config processes`.", ""]
    lines = []
    for dataset in sorted({r["dataset"] for r in rows}):
        sub = [r for r in rows if r["dataset"] == dataset]
        ex = sub[0]
        lines += [f"#### {dataset}, 10-shot: {ex['n_fit']:,} fit texts, {ex['n_dev']:,} dev texts", "",
                  f"`python -m benchmarks.run --config processes`; written by {provenance(sub)}; {ex['device']}, "
                  f"torch {ex['torch']}; the cores split between the processes.", "",
                  "| processes | seeds | dev accuracy | fit s (median) | contrastive s | training s |",
                  "|---|---|---|---|---|---|"]
        for n in sorted({r["processes"] for r in sub}):
            g = [r for r in sub if r["processes"] == n]
            lines.append("| " + " | ".join([
                str(n), ", ".join(str(r["seed"]) for r in g), _ms([r["dev_accuracy"] for r in g]),
                f"{np.median([r['fit_s'] for r in g]):.0f}",
                *(f"{np.median([r['stages'].get(k, 0.0) for r in g]):.1f}" for k in ("contrastive", "training"))]) + " |")
        lines.append("")
    return lines

# ----------------------------------------------------------------------------- cost and exports
def _variant(row):
    if row.get("variant"):
        return row["variant"]
    opts = row.get("strategy_options") or {}
    if opts.get("min_layer"):
        return "min_layer3" + ("" if opts.get("cache_frozen") else "_uncached")
    return row["strategy"] + ("_plain" if row.get("plain_path") else "")


def _device_of(row):
    machine = row.get("machine")
    if isinstance(machine, dict):
        return machine.get("gpu") or f"cpu ({machine.get('cpu_count')} cores), torch {machine.get('torch')}"
    return f"{row['device']}, torch {row.get('torch')}"


def _cost(files, plots):
    lines = []
    for stem in sorted(s for s in files if s.startswith("cost_")):
        runs = defaultdict(list)
        for r in files[stem]:
            runs[r["run"]].append(r)
        for stamp, rows in sorted(runs.items()):
            ratio = [r for r in rows if r.get("part") == "ratio"]
            ex = rows[0]
            lines += [f"`{stem}.jsonl`, run {stamp}: {_device_of(ex)}; {ex['n_train']:,} BANKING77 texts, "
                      f"{ex.get('epochs', '')} epochs, seed {ex['seed']}.", ""] if ratio else \
                     [f"`{stem}.jsonl`, run {stamp}: {_device_of(ex)}; seed {ex['seed']}.", ""]
            full = next((r for r in ratio if _variant(r) == "full"), None)
            if ratio:
                lines += ["| variant | fit s | fit / full | training stage s | training / full | optimizer state MiB | "
                          "peak RSS MiB | CUDA peak MiB | test accuracy |",
                          "|---|---|---|---|---|---|---|---|---|"]
            for r in ratio:
                train = (r.get("stages") or {}).get("training")
                full_train = (full.get("stages") or {}).get("training") if full else None
                cells = [_variant(r), f"{r['fit_s']:.1f}", f"{r['fit_s'] / full['fit_s']:.2f}" if full else "",
                         f"{train:.1f}" if train else "", f"{train / full_train:.2f}" if train and full_train else "",
                         f"{r['optimizer_state_bytes'] / 2**20:.2f}" if r.get("optimizer_state_bytes") else "",
                         f"{r['peak_rss_mib']:.0f}", f"{r['cuda_peak_mib']:.0f}" if r.get("cuda_peak_mib") else "",
                         f"{r['test_accuracy']:.4f}" if r.get("test_accuracy") is not None else ""]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
            scaling = [r for r in rows if r.get("part") == "scaling"]
            if scaling:
                lines += ["| scaling: training texts (1 epoch) | fit s | training stage s | peak RSS MiB |", "|---|---|---|---|"]
                lines += [f"| {r['n_train']:,} | {r['fit_s']:.1f} | {r['stages']['training']:.1f} | {r['peak_rss_mib']:.0f} |"
                          for r in scaling]
                lines.append("")
            groups = [r for r in rows if r.get("part") == "token_groups"]
            if groups:
                lines += ["| token groups: training texts | tokens | seconds (median of 5) |", "|---|---|---|"]
                lines += [f"| {r['n_train']:,} | {r['n_tokens']:,} | {r['seconds']:.3f} |" for r in groups]
                lines.append("")
            predict = [r for r in rows if r.get("part") == "predict"]
            if predict:
                lines += ["| predict | texts/s | agreement with predict |", "|---|---|---|"]
                lines += [f"| {r['how']} | {r['texts_per_s']:.0f} | {r.get('agreement_with_predict', '')} |" for r in predict]
                lines.append("")
    return lines


def _exports(files, plots):
    lines = ["`python -m benchmarks.run --config exports`.", "",
             "| written | texts / epochs | test accuracy | save() | save(include_backbone=True) | joblib | "
             "Hugging Face folder | ONNX | predict texts/s | ONNX texts/s | ONNX max abs diff |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    mib = 2**20
    for r in files.get("exports", []):
        lines.append(
            f"| {r.get('date', '0.1.0, 2026-11-26')} | {r['n_train']} / {r['epochs']} | {r['test_accuracy']:.4f} | "
            f"{r['save_delta_bytes'] / mib:.1f} MiB | {r['save_with_backbone_bytes'] / mib:.1f} MiB | "
            f"{r['joblib_bytes'] / mib:.1f} MiB | {r['huggingface_folder_bytes'] / mib:.1f} MiB | "
            f"{r['onnx_bytes'] / mib:.1f} MiB | {r['predict_texts_per_s']:.0f} | {r['onnx_texts_per_s']:.0f} | "
            f"{r['onnx_max_abs_diff']:.1e} |")
    return lines


# ----------------------------------------------------------------------------- README summary
#: The comparison the README summarises: the newest one at the current defaults.
SUMMARY_CONFIGS = ("default_10shot", "cpu_10shot")


def summary_config(files):
    """The results file the README's 10-shot summary comes from."""
    return next((c for c in SUMMARY_CONFIGS if files.get(c)), SUMMARY_CONFIGS[-1])


def _summary(files, plots):
    config = summary_config(files)
    rows = newest_runs(files.get(config, []))
    order = ["token_sparse", "fisher", "random", "full", "layers", "lora", "prefix", "bitfit", "frozen_lr", "setfit",
             "tfidf_lr"]
    methods = [m for m in order if any(r["method"] == m for r in rows)]
    lines = ["| 10-shot, test accuracy | " + " | ".join(REFERENCE_NAMES.get(m, m) for m in methods) + " |",
             "|---" * (len(methods) + 1) + "|"]
    for dataset in ("banking77", "clinc150"):
        cells = [f"{dataset} (`{config}`)"]
        for m in methods:
            acc = [r["accuracy"] for r in rows if r["dataset"] == dataset and r["method"] == m]
            seeds = sorted(r["seed"] for r in rows if r["dataset"] == dataset and r["method"] == m)
            cells.append(_ms(acc) + (f" (seed {', '.join(map(str, seeds))})" if 0 < len(acc) < 3 else ""))
        lines.append("| " + " | ".join(cells) + " |")
    full = [r for r in files.get("interpolation", []) if r["dataset"] == "banking77" and r["regime"] == "full"
            and r.get("strategy", "token_sparse") == "token_sparse" and r.get("refit_head")]
    if full:
        lines += ["", "| full BANKING77, test accuracy (`interpolation`, seeds 0-2) | linear probe on frozen features "
                  "(a=0) | finetune as trained (a=1) | fitted default model |", "|---|---|---|---|",
                  f"| token_sparse, the defaults of 0.1.0-0.2.0 (no contrastive stage) | {_ms([r['test_acc']['probe'] for r in full])} | "
                  f"{_ms([r['test_acc']['finetune'] for r in full])} | {_ms([r['test_acc']['final'] for r in full])} |"]
    job = [r for r in files.get("main_job", []) if "accuracy" in r and r["dataset"] == "banking77"]
    if job:
        order = ["random", "fisher", "full", "frozen_lr", "tfidf_lr"]
        of = _by_method(job)
        methods = [_job_name(m) for m in order if _job_name(m) in of]
        lines += ["", f"| all {job[0]['n_train']:,} BANKING77 training texts (`main_job`) | "
                  + " | ".join(f"{m}, {', '.join(sorted({r.get('version', '') for r in of[m]}))}, seed "
                               f"{', '.join(str(r['seed']) for r in of[m])}" for m in methods)
                  + " |", "|---" * (len(methods) + 1) + "|",
                  "| test accuracy | " + " | ".join(_ms([r["accuracy"] for r in of[m]]) for m in methods) + " |",
                  "| fit seconds (mean) | " + " | ".join(f"{np.mean([r['fit_s'] for r in of[m]]):.0f}" for m in methods)
                  + " |"]
    cost = [r for r in files.get("cost_cpu", []) if r.get("part") == "ratio"]
    if cost:
        stamp = max(r["run"] for r in cost)
        run = {_variant(r): r for r in cost if r["run"] == stamp}
        if "full" in run:
            names = [v for v in run if v != "full"]
            lines += ["", f"| fit time / `full` (`cost_cpu`, run {stamp}, 3,000 BANKING77 texts, 2 epochs) | "
                      + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|",
                      "| whole fit | " + " | ".join(f"{run[v]['fit_s'] / run['full']['fit_s']:.2f}x" for v in names) + " |"]
    return lines


# ----------------------------------------------------------------------------- features
FEATURE_NAMES = {"default": "TokenSparseClassifier()", "default_auto": "TokenSparseClassifier(multilabel_threshold=\"auto\")",
                 "frozen_lr": "frozen-embedding LR, same rule", "frozen_ovr_lr": "frozen-embedding one-vs-rest LR"}


def _feature_table(rows, config, fields, intro, names=None):
    """One table per regime of a ``features`` config: mean ± std over seeds of each field, per variant."""
    lines = []
    for regime in sorted({r["regime"] for r in rows}):
        mine = [r for r in rows if r["regime"] == regime and not r.get("error")]
        last = {}
        for r in mine:  # a rerun of a seed supersedes; the raw file keeps both
            last[(r["variant"], r["seed"])] = r
        mine = list(last.values())
        ex = mine[0]
        lines += [f"#### {regime}: {ex['n_train']:,} training texts", "",
                  f"`python -m benchmarks.run --config {config}`; written by {provenance(mine)}; {ex['device']}, "
                  f"torch {ex['torch']}; {intro}", "",
                  "| method | seeds | " + " | ".join(name for name, _ in fields) + " | fit s |",
                  "|---" * (len(fields) + 3) + "|"]
        names = {**FEATURE_NAMES, **(names or {})}
        for variant in [v for v in names if any(r["variant"] == v for r in mine)]:
            g = sorted((r for r in mine if r["variant"] == variant), key=lambda r: r["seed"])
            cells = [names[variant], ", ".join(str(r["seed"]) for r in g)]
            cells += [_ms([r[f] for r in g]) for _, f in fields]
            cells.append(_ms([r["fit_s"] for r in g], "{:.0f}"))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _oos(files, plots):
    lines = []
    fields = [("in-scope accuracy", "inscope_accuracy"), ("out-of-scope recall", "oos_recall"),
              ("in-scope rejected", "inscope_rejected"), ("threshold", "threshold")]
    dev = [("dev in-scope rejected", "dev_inscope_rejected"), ("dev out-of-scope recall", "dev_oos_recall")]
    names = {"default": 'TokenSparseClassifier(unknown_label="oos")',
             "rejection_only": "the rejection stage alone (max_epochs=0, contrastive_epochs=0): the default's threshold"}
    for config in ("oos", "oos_full"):
        rows = files.get(config, [])
        current = [r for r in rows if r.get("rule") == "out_of_fold_conformal"]
        earlier = [r for r in rows if "rule" not in r]
        if current:
            lines += _feature_table(current, config, fields + dev,
                                    "CLINC150 test: 4,500 in-scope and 1,000 out-of-scope queries; dev: CLINC150's "
                                    "validation split (3,000 in-scope, 100 out-of-scope), never trained on. Rejection "
                                    "by the pretrained backbone's probe, threshold out of fold on every in-scope "
                                    "training text (conformal, target 95% accepted = 5% rejected).", names=names)
        if earlier:
            lines += _feature_table(earlier, config, fields,
                                    "CLINC150 test. The rule before 0.6.0: the threshold on the model's own "
                                    "best-class probability, keeping 95% of the in-scope validation split accepted.",
                                    names=names)
    return lines or ["No rows yet: `python -m benchmarks.run --config oos`."]


def _multilabel(files, plots):
    rows = files.get("multilabel", [])
    if not rows:
        return ["No rows yet: `python -m benchmarks.run --config multilabel`."]
    ex = rows[0]
    return _feature_table(rows, "multilabel", [("micro-F1", "micro_f1"), ("macro-F1", "macro_f1"),
                                               ("exact match", "subset_accuracy"),
                                               ("exact match, two-request messages", "subset_accuracy_pairs")],
                          f"{ex['n_labels']} labels; test: {ex['n_test']:,} messages, {ex['n_test_pairs']:,} of them "
                          "two requests.")


def _serving(files, plots):
    rows = [r for r in files.get("serving", []) if not r.get("error")]
    if not rows:
        return ["No rows yet: `python -m benchmarks.run --config serving`."]
    last = {}
    for r in rows:  # a rerun of a setting supersedes; the raw file keeps both
        last[(r["torch_threads"], r["texts_per_call"], r["clients"])] = r
    rows = sorted(last.values(), key=lambda r: (str(r["torch_threads"]) != "all", r["texts_per_call"], r["clients"]))
    ex = rows[0]
    lines = [f"`python -m benchmarks.run --config serving`; written by {provenance(rows)}; {ex['device']}, torch "
             f"{ex['torch']}; {ex['model']} fitted on {ex['n_train']:,} BANKING77 texts, saved and loaded; each "
             f"setting runs {ex['seconds']} s in a fresh process, every client thread calling `predict` on "
             "BANKING77 test texts.", "",
             "| torch threads | texts per call | client threads | texts / s | p50 ms per call | p99 ms per call |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        threads = f"all ({r['threads']})" if r["torch_threads"] == "all" else str(r["torch_threads"])
        lines.append(f"| {threads} | {r['texts_per_call']} | {r['clients']} | {r['texts_per_s']:.0f} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    return lines


BLOCKS = {
    "summary": _summary,
    "serving": _serving,
    "oos": _oos,
    "multilabel": _multilabel,
    "comparisons-current": lambda files, plots: _comparisons(files, True, plots),
    "comparisons-earlier": lambda files, plots: _comparisons(files, False, plots),
    "interpolation": _interpolation,
    "dev-variants": _dev_variants,
    "dev-screen": _dev_screen,
    "speed-screen": _speed_screen,
    "precision-screen": _precision_screen,
    "fast-full": _fast_full,
    "kernels": _kernels,
    "kernels-full": _kernels_full,
    "ce-screen": _ce_screen,
    "ce-screen-full": lambda files, plots: _ce_screen(files, plots, "ce_screen_full"),
    "epoch-screen": lambda files, plots: _ce_screen(files, plots, "epoch_screen"),
    "epoch-screen-full": lambda files, plots: _ce_screen(files, plots, "epoch_screen_full"),
    "cap-screen-full": lambda files, plots: _ce_screen(files, plots, "cap_screen_full"),
    "patience-screen": lambda files, plots: _ce_screen(files, plots, "patience_screen"),
    "patience-screen-full": lambda files, plots: _ce_screen(files, plots, "patience_screen_full"),
    "patience-replay": _patience_replay,
    "patience-check-full": _patience_check,
    "search": _search,
    "main-job": _main_job,
    "search-bf16": lambda files, plots: _search(files, plots, "search_bf16"),
    "token-structure": _token_structure,
    "group-features": _group_features,
    "processes": _processes,
    "cost": _cost,
    "exports": _exports,
}


def rendered(text, files, plots=False):
    """``text`` with every rendered block rewritten from ``files``' rows."""
    def fill(m):
        name = m.group(2)
        if name in REFERENCE_BLOCKS:
            return m.group(0)  # the package renders it
        if name not in BLOCKS:
            raise KeyError(f"no renderer for the block {name!r}; known: {sorted(BLOCKS)}")
        body = "\n".join(BLOCKS[name](files, plots)).strip("\n")
        return f"{m.group(1)}{body}\n{m.group(4)}"

    return BLOCK.sub(fill, text)


def render(plots=True):
    if render_reference_tables is not None:
        for rel in render_reference_tables(ROOT):
            print(f"rendered {rel}")
    files = rows_by_file()
    for doc in DOCS:
        text = doc.read_text()
        new = rendered(text, files, plots)
        if new != text:
            doc.write_text(new)
            print(f"rendered {doc.relative_to(ROOT)}")


if __name__ == "__main__":
    render()
