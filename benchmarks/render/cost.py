"""What fits cost: a search with and without memory, the README's main job stage by stage, processes, cost rows,
exports."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np

from .rows import REFERENCE_NAMES, _ms, newest_runs, provenance


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
