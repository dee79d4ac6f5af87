"""Command line: ``sksparseft fit | predict | evaluate | explain`` over CSV/TSV/JSONL files, and
``sksparseft tag ...`` for slots and intents (:mod:`sksparseft.tagging.cli`).

Exit codes (stable, for scripts):
  0  success
  1  unexpected error (a bug: please report it)
  2  bad usage or bad input data (missing file or column, unreadable file, bad --set value)
  3  unreadable model file (missing, truncated, modified, newer format, other backbone)
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys

import numpy as np
from pathlib import Path

from .atomic import atomic_write

EXIT_OK, EXIT_ERROR, EXIT_INPUT, EXIT_MODEL = 0, 1, 2, 3


class InputError(Exception):
    """Bad input data or arguments (exit code 2)."""


# -- reading and writing tables --------------------------------------------------------
def _format(path, fmt):
    if fmt:
        return fmt
    suffix = Path(path).suffix.lower()
    return {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(suffix, "csv")


def read_table(path, fmt=None):
    """Rows (dicts) of a CSV/TSV file with a header, or of a JSON-lines file."""
    if path != "-" and not Path(path).is_file():
        raise InputError(f"no such file: {path}")
    fmt = _format(path, fmt)
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text ({exc})") from exc
    if fmt == "jsonl":
        rows = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path} line {i} is not JSON: {exc.msg}") from exc
            if not isinstance(row, dict):
                raise InputError(f"{path} line {i} is not a JSON object")
            rows.append(row)
        return rows
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",")
    if not reader.fieldnames:
        raise InputError(f"{path} is empty or has no header row")
    return list(reader)


def column(rows, name, path):
    if not rows:
        raise InputError(f"{path} has no data rows")
    missing = [i for i, r in enumerate(rows, start=1) if name not in r]
    if missing:
        known = ", ".join(sorted(rows[0])) or "none"
        raise InputError(f"{path}: column {name!r} is missing (row {missing[0]}); columns: {known}")
    return [r[name] for r in rows]


def _write(path, write):
    """Write through ``write(file)`` to ``path`` atomically, or to stdout for None/'-'."""
    if path in (None, "-"):
        write(sys.stdout)
        return

    def write_text(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            write(f)

    atomic_write(path, write_text)


def _parse_sets(items):
    params = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw  # a bare string such as strategy=lora
    return params


def _label_sets(values, sep):
    """Multi-label cells such as "card|refund" as lists of labels (an empty cell: no label)."""
    return [[v.strip() for v in str(cell).split(sep) if v.strip()] for cell in values]


def _indicator(values, sep):
    """A labelled column with several labels per cell as a 0/1 DataFrame, one column per label."""
    import pandas as pd
    from sklearn.preprocessing import MultiLabelBinarizer

    binarizer = MultiLabelBinarizer()
    matrix = binarizer.fit_transform(_label_sets(values, sep))
    return pd.DataFrame(matrix, columns=[str(c) for c in binarizer.classes_])


def _label_texts(clf):
    from .io.export import label_texts

    return label_texts(clf)


def _load(args):
    from .estimator import TokenSparseClassifier

    clf = TokenSparseClassifier.load(args.model, device=args.device)
    clf.verbose = 0 if args.quiet else 1
    return clf


# -- commands --------------------------------------------------------------------------
def cmd_fit(args):
    from .estimator import TokenSparseClassifier

    rows = read_table(args.data, args.format)
    X, y = column(rows, args.text_column, args.data), column(rows, args.label_column, args.data)
    if args.label_sep:
        y = _indicator(y, args.label_sep)
    params = _parse_sets(args.set)
    params.setdefault("verbose", 0 if args.quiet else 1)
    if args.device:
        params["device"] = args.device
    try:
        clf = TokenSparseClassifier(**params)
    except TypeError as exc:
        raise InputError(f"--set: {exc}") from exc
    weights = None
    if args.weight_column:
        raw = column(rows, args.weight_column, args.data)
        try:
            weights = [float(v) for v in raw]
        except (TypeError, ValueError):
            raise InputError(f"{args.data}: column {args.weight_column!r} holds a value that is not a number") from None
    try:
        clf.fit(X, y, sample_weight=weights)
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc)) from exc
    clf.save(args.model_out, include_backbone=args.include_backbone)
    print(json.dumps({"model": str(args.model_out), "classes": len(clf.classes_), "texts": len(X),
                      "fit_time_s": round(clf.fit_time_, 2), "finetuned": clf.finetuned_}), file=sys.stderr)


def cmd_predict(args):
    clf = _load(args)
    rows = read_table(args.data, args.format)
    X = column(rows, args.text_column, args.data)
    proba = clf.predict_proba(X)
    pred = clf._labels(proba, clf._rejection_scores(X, proba))
    names = _label_texts(clf)
    if clf.multilabel_:
        pred = [args.label_sep.join(n for n, on in zip(names, row) if on) for row in pred]

    def write(f):
        names_out = ["prediction"] + ([f"proba_{c}" for c in names] if args.proba else [])
        w = csv.writer(f)
        w.writerow([args.text_column] + names_out)
        for text, p, row in zip(X, pred, proba):
            w.writerow([text, p] + ([f"{v:.6g}" for v in row] if args.proba else []))

    _write(args.output, write)


def cmd_evaluate(args):
    from sklearn.metrics import accuracy_score, f1_score

    clf = _load(args)
    rows = read_table(args.data, args.format)
    X, y = column(rows, args.text_column, args.data), column(rows, args.label_column, args.data)
    pred = clf.predict(X)
    labels = _label_texts(clf)
    if clf.multilabel_:
        sets = _label_sets(y, args.label_sep)
        unknown = sorted({v for s in sets for v in s} - set(labels))
        truth = np.asarray([[name in s for name in labels] for s in sets], dtype=int)
        report = {"texts": len(X), "subset_accuracy": accuracy_score(truth, pred),
                  "micro_f1": f1_score(truth, pred, average="micro", zero_division=0),
                  "macro_f1": f1_score(truth, pred, average="macro", zero_division=0), "unknown_labels": unknown}
        _write(args.output, lambda f: f.write(json.dumps(report) + "\n"))
        return
    y_str, pred_str = [str(v) for v in y], [str(v) for v in pred]
    unknown = sorted(set(y_str) - set(labels))
    report = {"texts": len(X), "accuracy": accuracy_score(y_str, pred_str),
              "macro_f1": f1_score(y_str, pred_str, average="macro"), "unknown_labels": unknown}
    if clf.unknown_label is not None and clf.unknown_threshold_ is not None:
        # Rejection: how often it rejects, and how much of the labelled out-of-scope texts it catches.
        rejected = np.asarray(pred_str) == str(clf.unknown_label)
        out_of_scope = np.asarray(y_str) == str(clf.unknown_label)
        report["rejected"] = float(rejected.mean())
        if out_of_scope.any():
            report["unknown_recall"] = float(rejected[out_of_scope].mean())
            report["in_scope_accuracy"] = float((np.asarray(pred_str) == np.asarray(y_str))[~out_of_scope].mean())
    _write(args.output, lambda f: f.write(json.dumps(report) + "\n"))


def cmd_explain(args):
    clf = _load(args)
    rows = read_table(args.data, args.format)
    X = column(rows, args.text_column, args.data)
    out = clf.explain(X, top=args.top)

    def write(f):
        for o in out:
            f.write(json.dumps(o, default=_json_value) + "\n")

    _write(args.output, write)


def _json_value(v):
    if hasattr(v, "tolist"):  # numpy scalars and arrays (a multi-label prediction row)
        return v.tolist()
    return str(v)


# -- parser ----------------------------------------------------------------------------
def build_parser():
    p = argparse.ArgumentParser(prog="sksparseft", description="Token-driven sparse finetuning of text classifiers.",
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, labels):
        sp.add_argument("--data", required=True, help="CSV/TSV with a header, or JSONL; '-' reads stdin")
        sp.add_argument("--format", choices=["csv", "tsv", "jsonl"], help="default: from the file extension")
        sp.add_argument("--text-column", default="text")
        if labels:
            sp.add_argument("--label-column", default="label")
        sp.add_argument("--device", default=None, help="'cpu', 'cuda', ... (default: the model's own setting)")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        sp.add_argument("--label-sep", default=None if labels == "fit" else "|",
                        help="multi-label: the separator of several labels in one cell, e.g. 'card|refund' "
                             "(fit: turns multi-label on; predict/evaluate: default '|')")

    f = sub.add_parser("fit", help="fit a classifier and save it (safetensors + JSON)")
    common(f, labels="fit")
    f.add_argument("--model-out", required=True, help="file to write, e.g. model.safetensors")
    f.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="an estimator parameter, value as JSON or bare string (repeatable): --set strategy=lora")
    f.add_argument("--include-backbone", action="store_true", help="store the whole backbone in the file")
    f.add_argument("--weight-column", default=None, help="column of per-text weights (fit's sample_weight)")
    f.set_defaults(func=cmd_fit)

    for name, func, helptext, labels in (
        ("predict", cmd_predict, "predict the class of each text (CSV out)", False),
        ("evaluate", cmd_evaluate, "accuracy and macro-F1 on labelled texts (JSON out)", True),
        ("explain", cmd_explain, "the token groups behind each prediction (JSONL out)", False),
    ):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("--model", required=True, help="a file written by 'sksparseft fit' or .save()")
        common(sp, labels=labels)
        sp.add_argument("--output", default=None, help="file to write (default: stdout)")
        if name == "predict":
            sp.add_argument("--proba", action="store_true", help="add one probability column per class")
        if name == "explain":
            sp.add_argument("--top", type=int, default=5)
        sp.set_defaults(func=func)
    from .tagging.cli import add_parser

    add_parser(sub)
    return p


def main(argv=None):
    from .io.persistence import ModelFileError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except InputError as exc:
        print(f"sksparseft {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except (ModelFileError, FileNotFoundError) as exc:
        print(f"sksparseft {args.command}: model error: {exc}", file=sys.stderr)
        return EXIT_MODEL
    except KeyboardInterrupt:
        print(f"sksparseft {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the exit code contract: 1 for anything unexpected
        print(f"sksparseft {args.command}: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
