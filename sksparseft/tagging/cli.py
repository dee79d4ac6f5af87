"""``sksparseft tag fit | predict | evaluate | explain``: the tagger over JSONL files.

Each line is one text: ``{"words": [...], "tags": [...], "intent": ...}`` (or ``"text"`` in place of
``"words"``, split on whitespace); ``tags`` and ``intent`` where the command needs labels. A file
whose lines carry an ``intent`` fits the joint mode.
"""

from __future__ import annotations

import json
import sys

from ..cli import InputError, _parse_sets, _write

INTENT = "intent"


def read_lines(path):
    """The JSON objects of a JSONL file (``-``: stdin), or InputError naming the bad line."""
    from pathlib import Path

    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise InputError(f"{path}, line {n}: not a JSON object") from None
        if not isinstance(row, dict) or not ("words" in row or "text" in row):
            raise InputError(f"{path}, line {n}: needs a 'words' list or a 'text'")
        rows.append(row)
    if not rows:
        raise InputError(f"{path} holds no text")
    return rows


def _words(rows):
    return [row["words"] if "words" in row else row["text"] for row in rows]


def _labels(rows, path):
    missing = [i for i, row in enumerate(rows, 1) if "tags" not in row]
    if missing:
        raise InputError(f"{path}: text {missing[0]} has no 'tags'")
    with_intent = [INTENT in row for row in rows]
    if any(with_intent) and not all(with_intent):
        raise InputError(f"{path}: text {with_intent.index(False) + 1} has no 'intent' (others have one)")
    return [(row[INTENT], row["tags"]) for row in rows] if all(with_intent) else [row["tags"] for row in rows]


def _load(args):
    from .estimator import TokenSparseTagger

    est = TokenSparseTagger.load(args.model, device=args.device)
    est.verbose = 0 if args.quiet else 1
    return est


def cmd_fit(args):
    from .estimator import TokenSparseTagger

    rows = read_lines(args.data)
    params = _parse_sets(args.set)
    params.setdefault("verbose", 0 if args.quiet else 1)
    if args.device:
        params["device"] = args.device
    try:
        est = TokenSparseTagger(**params)
    except TypeError as exc:
        raise InputError(f"--set: {exc}") from exc
    try:
        est.fit(_words(rows), _labels(rows, args.data))
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc)) from exc
    est.save(args.model_out, include_backbone=args.include_backbone)
    print(json.dumps({"model": str(args.model_out), "tags": len(est.tags_),
                      "intents": None if est.intents_ is None else len(est.intents_), "texts": len(rows),
                      "fit_time_s": round(est.fit_time_, 2), "finetuned": est.finetuned_}), file=sys.stderr)


def cmd_predict(args):
    est = _load(args)
    words = _words(read_lines(args.data))
    try:
        pred = est.predict(words)
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc)) from exc

    def write(f):
        for w, p in zip([_split(w) for w in words], pred):
            row = {"words": w, "tags": p[1], INTENT: _plain(p[0])} if isinstance(p, tuple) else {"words": w, "tags": p}
            f.write(json.dumps(row) + "\n")

    _write(args.output, write)


def cmd_evaluate(args):
    from .targets import frame_accuracy_score, intent_accuracy_score, slot_f1_score

    from .data import validate_tags, validate_words

    est = _load(args)
    rows = read_lines(args.data)
    try:
        words = validate_words(_words(rows))
        y = _labels(rows, args.data)
        validate_tags(y, words)
        pred = est.predict(words)
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc)) from exc
    joint = isinstance(pred[0], tuple)
    if joint != isinstance(y[0], tuple):
        raise InputError(f"{args.data}: the tagger was fitted {'with' if joint else 'without'} intents")
    tags = [t for _, t in y] if joint else y
    report = {"texts": len(rows), "slot_f1": slot_f1_score(tags, [p[1] for p in pred] if joint else pred),
              "unknown_tags": sorted({t for row in tags for t in row} - {str(t) for t in est.tags_})}
    if joint:
        report.update(intent_accuracy=intent_accuracy_score(y, pred), frame_accuracy=frame_accuracy_score(y, pred))
    _write(args.output, lambda f: f.write(json.dumps(report) + "\n"))


def cmd_explain(args):
    est = _load(args)
    try:
        out = est.explain(_words(read_lines(args.data)), top=args.top)
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc)) from exc
    _write(args.output, lambda f: [f.write(json.dumps(o, default=_plain) + "\n") for o in out])


def _split(w):
    return w.split() if isinstance(w, str) else list(w)


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def add_parser(sub):
    """The ``tag`` command and its own sub-commands."""
    tag = sub.add_parser("tag", help="slots (a tag per word) and intents: fit | predict | evaluate | explain",
                         description=__doc__.split("\n\n", 1)[1])
    cmds = tag.add_subparsers(dest="tag_command", required=True)

    def common(sp):
        sp.add_argument("--data", required=True, help="JSONL, one text a line; '-' reads stdin")
        sp.add_argument("--device", default=None, help="'cpu', 'cuda', ... (default: the model's own setting)")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    f = cmds.add_parser("fit", help="fit a tagger and save it (safetensors + JSON)")
    common(f)
    f.add_argument("--model-out", required=True, help="file to write, e.g. tagger.safetensors")
    f.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="an estimator parameter, value as JSON or bare string (repeatable): --set strategy=full")
    f.add_argument("--include-backbone", action="store_true", help="store the whole backbone in the file")
    f.set_defaults(func=cmd_fit)
    for name, func, helptext in (("predict", cmd_predict, "tags (and intent) of each text (JSONL out)"),
                                 ("evaluate", cmd_evaluate, "slot F1 (and intent, frame accuracy) on tagged texts (JSON out)"),
                                 ("explain", cmd_explain, "what holds up each predicted slot (JSONL out)")):
        sp = cmds.add_parser(name, help=helptext)
        sp.add_argument("--model", required=True, help="a file written by 'sksparseft tag fit' or .save()")
        common(sp)
        sp.add_argument("--output", default=None, help="file to write (default: stdout)")
        if name == "explain":
            sp.add_argument("--top", type=int, default=5)
        sp.set_defaults(func=func)
