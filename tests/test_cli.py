"""The command line: fit -> predict/evaluate/explain over files, with reliable exit codes."""

import csv
import json

import numpy as np
import pytest

from sksparseft import TokenSparseClassifier
from sksparseft.cli import EXIT_INPUT, EXIT_MODEL, EXIT_OK, main


@pytest.fixture(scope="module")
def files(tmp_path_factory, toy_data):
    d = tmp_path_factory.mktemp("cli")
    X, y = toy_data
    with open(d / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(zip(X, y))
    with open(d / "test.jsonl", "w") as f:
        for t, label in zip(X[:8], y[:8]):
            f.write(json.dumps({"utterance": t, "intent": label}) + "\n")
    return d


@pytest.fixture(scope="module")
def model(files, tiny_model):
    path = files / "model.safetensors"
    sets = [f"model={tiny_model}", "max_epochs=1", "batch_size=8",
            "validation_fraction=0.0", "random_state=0"]
    args = ["fit", "--data", str(files / "train.csv"), "--model-out", str(path), "--quiet", "--device", "cpu"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == EXIT_OK
    return path


def test_predict_writes_one_row_per_text_with_probabilities(files, model):
    out = files / "pred.csv"
    code = main(["predict", "--model", str(model), "--data", str(files / "test.jsonl"), "--text-column", "utterance",
                 "--output", str(out), "--proba", "--quiet"])
    assert code == EXIT_OK
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 8 and all(r["prediction"] in {"card", "refund", "pin"} for r in rows)
    assert all(abs(sum(float(v) for k, v in r.items() if k.startswith("proba_")) - 1) < 1e-4 for r in rows)


def test_evaluate_and_explain(files, model, capsys):
    code = main(["evaluate", "--model", str(model), "--data", str(files / "test.jsonl"), "--text-column", "utterance",
                 "--label-column", "intent", "--quiet"])
    assert code == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["texts"] == 8 and report["unknown_labels"] == []
    rows = [json.loads(line) for line in (files / "test.jsonl").read_text().splitlines()]
    clf = TokenSparseClassifier.load(model, device="cpu")
    expected = np.mean(clf.predict([r["utterance"] for r in rows]) == np.asarray([r["intent"] for r in rows]))
    assert report["accuracy"] == pytest.approx(expected)
    code = main(["explain", "--model", str(model), "--data", str(files / "test.jsonl"), "--text-column", "utterance",
                 "--top", "2", "--quiet"])
    assert code == EXIT_OK
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 8 and all(len(x["groups"]) <= 2 for x in lines)


@pytest.mark.parametrize("args,code,message", [
    (["predict", "--data", "{d}/absent.csv"], EXIT_INPUT, "no such file"),
    (["predict", "--data", "{d}/test.jsonl"], EXIT_INPUT, "column 'text' is missing"),
    (["predict", "--data", "{d}/train.csv", "--model", "{d}/absent.safetensors"], EXIT_MODEL, "model error"),
    (["predict", "--data", "{d}/train.csv", "--model", "{d}/train.csv"], EXIT_MODEL, "not a readable sksparseft model"),
    (["fit", "--data", "{d}/train.csv", "--model-out", "{d}/x.safetensors", "--set", "density"], EXIT_INPUT, "key=value"),
    (["fit", "--data", "{d}/train.csv", "--model-out", "{d}/x.safetensors", "--set", "colour=1"], EXIT_INPUT, "colour"),
    (["fit", "--data", "{d}/train.csv", "--model-out", "{d}/x.safetensors", "--set", "density=2"], EXIT_INPUT, "density"),
])
def test_errors_have_their_exit_code_and_a_clear_message(files, model, capsys, args, code, message):
    args = [a.format(d=files) for a in args]
    if args[0] != "fit" and "--model" not in args:
        args += ["--model", str(model)]
    assert main(args + ["--quiet"]) == code
    assert message in capsys.readouterr().err
    assert not (files / "x.safetensors").exists()
