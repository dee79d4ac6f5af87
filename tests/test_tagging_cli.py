"""sksparseft tag fit | predict | evaluate | explain: files in, files out, stable exit codes."""

import json

import pytest

from cases import slot_task
from sksparseft.cli import EXIT_INPUT, EXIT_MODEL, EXIT_OK, main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    X, y = slot_task(48)
    folder = tmp_path_factory.mktemp("tag-cli")
    train = folder / "train.jsonl"
    train.write_text("".join(json.dumps({"words": w, "tags": t, "intent": c}) + "\n" for w, (c, t) in zip(X, y)))
    texts = folder / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": " ".join(w)}) + "\n" for w in X[:5]))
    return folder, train, texts


@pytest.fixture(scope="module")
def fitted(files, tiny_model):
    folder, train, _ = files
    model = folder / "tagger.safetensors"
    assert main(["tag", "fit", "--data", str(train), "--model-out", str(model), "--quiet", "--set", f"model={tiny_model}",
                 "--set", "max_epochs=1", "--set", "batch_size=8", "--set", "random_state=0", "--device", "cpu"]) == EXIT_OK
    return model


def test_predict_writes_words_tags_and_intent(files, fitted):
    folder, _, texts = files
    out = folder / "pred.jsonl"
    assert main(["tag", "predict", "--model", str(fitted), "--data", str(texts), "--output", str(out), "--quiet"]) == EXIT_OK
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5 and all(len(r["tags"]) == len(r["words"]) and "intent" in r for r in rows)


def test_evaluate_reports_slot_f1_and_intent_accuracy(files, fitted):
    folder, train, _ = files
    out = folder / "report.json"
    assert main(["tag", "evaluate", "--model", str(fitted), "--data", str(train), "--output", str(out), "--quiet"]) == EXIT_OK
    report = json.loads(out.read_text())
    from sksparseft import TokenSparseTagger
    from sksparseft.tagging import intent_accuracy_score, slot_f1_score

    X, y = slot_task(48)
    pred = TokenSparseTagger.load(fitted).predict(X)
    assert report["texts"] == 48 and report["slot_f1"] == pytest.approx(slot_f1_score(y, pred))
    assert report["intent_accuracy"] == pytest.approx(intent_accuracy_score(y, pred))


def test_explain_writes_one_line_a_text(files, fitted):
    folder, _, texts = files
    out = folder / "explain.jsonl"
    assert main(["tag", "explain", "--model", str(fitted), "--data", str(texts), "--output", str(out), "--quiet"]) == EXIT_OK
    assert len(out.read_text().splitlines()) == 5


def test_tags_missing_on_a_line_is_bad_input(files, tiny_model, capsys):
    folder, _, texts = files
    code = main(["tag", "fit", "--data", str(texts), "--model-out", str(folder / "x.safetensors"), "--quiet"])
    assert code == EXIT_INPUT and "has no 'tags'" in capsys.readouterr().err
    assert not (folder / "x.safetensors").exists()


def test_a_missing_model_file_is_a_model_error(files, tmp_path):
    _, _, texts = files
    missing = tmp_path / "none.safetensors"
    assert main(["tag", "predict", "--model", str(missing), "--data", str(texts), "--quiet"]) == EXIT_MODEL


def test_evaluate_with_a_wrong_tag_count_is_bad_input(files, fitted, capsys):
    folder, _, _ = files
    bad = folder / "bad.jsonl"
    bad.write_text(json.dumps({"words": ["fly", "to", "paris"], "tags": ["O", "B-to"], "intent": "book_flight"}) + "\n")
    assert main(["tag", "evaluate", "--model", str(fitted), "--data", str(bad), "--quiet"]) == EXIT_INPUT
    assert "has 2 tags but X[0] has 3 words" in capsys.readouterr().err
