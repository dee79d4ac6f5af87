"""The speed screens on dev splits, each against the rule written before its rows: speed, precision, the sparse path's
kernels, and the cross-entropy, epoch, cap and patience screens."""

from __future__ import annotations

import numpy as np

from .rows import _above, _at_least, _dev_groups, _ms, _screen_heading


#: The speed screen's reference points (docs/research.md, "How the speed default is chosen").
SPEED_REFERENCES = {"default": "random_c2", "full": "full_c2", "frozen": "frozen_lr"}


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


#: The precision screen's pairs: (bf16 variant, its float32 twin) (docs/research.md, "Does bf16 pay on the CPU?").
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


#: Each such screen's candidates, and whether "at least full" is one of its rule's tests (docs/research.md:
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


#: The patience rule's candidate and its patience, the default's (docs/research.md: "Does early
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


#: The all-data check of the patience default (docs/research.md: "Does patience 2 hold with all the
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
