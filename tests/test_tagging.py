"""TokenSparseTagger: the estimator's contract, its guarantees, its files and exports, every strategy."""

import pickle
import struct
import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from cases import NEEDS_ONNX, STRATEGY_CASES, STRATEGIES, slot_task
from sksparseft import TokenSparseClassifier, TokenSparseTagger
from sksparseft.io.model_file import ModelFileError
from sksparseft.tagging import slot_f1_score, slot_f1_scorer

FAST = dict(max_epochs=2, batch_size=8, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def slots():
    return slot_task(60)


@pytest.fixture(scope="module")
def joint(tiny_model, slots):
    X, y = slots
    return TokenSparseTagger(tiny_model, **FAST).fit(X, y)


@pytest.fixture(scope="module")
def tags_only(tiny_model, slots):
    X, y = slots
    return TokenSparseTagger(tiny_model, **FAST).fit(X, [t for _, t in y])


def test_predict_gives_a_tag_per_word(tags_only, slots):
    X, _ = slots
    pred = tags_only.predict(X[:5])
    assert [len(p) for p in pred] == [len(w) for w in X[:5]]
    assert set(t for row in pred for t in row) <= set(tags_only.tags_)
    assert tags_only.intents_ is None


def test_predict_proba_per_word_and_tag_in_the_order_of_tags(tags_only, slots):
    X, _ = slots
    proba = tags_only.predict_proba(X[:5])
    argmax = clone(tags_only).set_params(decoding="argmax")
    argmax.__dict__.update({k: v for k, v in tags_only.__dict__.items() if k.endswith("_")})
    for p, w, tags in zip(proba, X[:5], argmax.predict(X[:5])):
        assert p.shape == (len(w), len(tags_only.tags_))
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
        assert tags_only.tags_[p.argmax(axis=1)].tolist() == tags


def _stray_inside(est, monkeypatch):
    """Make every word's probabilities favour O, then a stray I-city on the second word (argmax: O, I-city)."""
    tags = est.tags_.tolist()

    def outputs(X):
        from sksparseft.tagging.data import validate_words

        words = validate_words(X)
        rows = []
        for w in words:
            p = np.full((len(w), len(tags)), 0.01)
            p[:, tags.index("O")] = 0.5
            p[1, tags.index("I-city")] = 0.6
            rows.append(p / p.sum(axis=1, keepdims=True))
        return words, rows, None

    monkeypatch.setattr(est, "_outputs", outputs)


def test_constrained_decoding_gives_valid_iob2(tags_only, monkeypatch):
    _stray_inside(tags_only, monkeypatch)
    words = [["fly", "to", "new", "york"]]
    assert tags_only.predict(words)[0][1] != "I-city"  # the stray I-city is not a valid start
    tags_only.decoding = "argmax"
    try:
        assert tags_only.predict(words)[0][1] == "I-city"
    finally:
        tags_only.decoding = "constrained"


def test_joint_predict_gives_intent_and_tags(joint, slots):
    X, y = slots
    pred = joint.predict(X[:6])
    assert all(isinstance(p, tuple) and p[0] in joint.intents_ and len(p[1]) == len(w) for p, w in zip(pred, X[:6]))
    proba = joint.predict_intent_proba(X[:6])
    assert proba.shape == (6, 3)
    assert [joint.intents_[i] for i in proba.argmax(axis=1)] == [p[0] for p in pred]


def test_texts_and_word_lists_tag_alike(tags_only, slots):
    X, _ = slots
    assert tags_only.predict([" ".join(w) for w in X[:5]]) == tags_only.predict(X[:5])


def test_score_is_entity_f1_and_learns_the_slots(tiny_model, slots):
    X, y = slots
    est = TokenSparseTagger(tiny_model, strategy="full", learning_rate=3e-3, max_epochs=6, batch_size=8, device="cpu",
                            random_state=0).fit(X, [t for _, t in y])
    assert est.score(X, [t for _, t in y]) == pytest.approx(slot_f1_score([t for _, t in y], est.predict(X)))
    assert est.score(X, [t for _, t in y]) > 0.5


def test_joint_score_averages_slot_f1_and_intent_accuracy(joint, slots):
    X, y = slots
    pred = joint.predict(X)
    acc = np.mean([p[0] == t[0] for p, t in zip(pred, y)])
    assert joint.score(X, y) == pytest.approx((slot_f1_score(y, pred) + acc) / 2)


def test_plain_labels_fit_and_score(tiny_model, slots):
    X, y = slots
    plain = [[t[2:] if t != "O" else "O" for t in tags] for _, tags in y]
    est = TokenSparseTagger(tiny_model, **FAST).fit(X, plain)
    assert est.tag_scheme_ == "plain" and "B-city" not in est.tags_
    # plain labels score as runs, as their IOB2 reading would
    pred = est.predict(X)
    iob2 = [[f"B-{t}" if t != "O" and (i == 0 or row[i - 1] != t) else (f"I-{t}" if t != "O" else "O")
             for i, t in enumerate(row)] for row in (plain, pred)[0]]
    iob2_pred = [[f"B-{t}" if t != "O" and (i == 0 or row[i - 1] != t) else (f"I-{t}" if t != "O" else "O")
                  for i, t in enumerate(row)] for row in pred]
    assert est.score(X, plain) == pytest.approx(slot_f1_score(iob2, iob2_pred))


@pytest.mark.parametrize("y_of, message", [
    (lambda y: [t[:-1] for _, t in y], "has .* tags but X.* has .* words"),
    (lambda y: [(c, t[:-1]) for c, t in y], "has .* tags but X.* has .* words"),
    (lambda y: [t for _, t in y[:-1]] + [y[-1]], r"y\[59\] is an \(intent, tags\) pair but y\[0\] is a tag list"),
    (lambda y: [(c, [None] * len(t)) for c, t in y], "holds a tag that is a NoneType"),
])
def test_bad_y_fails_before_anything_loads(slots, y_of, message):
    """Mismatched tag counts, mixed rows, non-str tags: named before the (missing) model is looked for."""
    X, y = slots
    with pytest.raises((ValueError, TypeError), match=message):
        TokenSparseTagger("no-such-model", **FAST).fit(X, y_of(y))


def test_empty_texts_fail_early(slots):
    X, y = slots
    with pytest.raises(ValueError, match=r"X\[1\] is empty"):
        TokenSparseTagger("no-such-model", **FAST).fit([X[0], ""], [y[0][1], []])


def test_unknown_tags_at_score_are_named(tags_only, slots):
    X, y = slots
    tags = [list(t) for _, t in y[:3]]
    tags[0][0] = "B-airline"
    with pytest.raises(ValueError, match="never saw in fit: \\['B-airline'\\]"):
        tags_only.score(X[:3], tags)


def test_joint_y_at_score_of_a_tags_only_tagger_is_an_error(tags_only, slots):
    X, y = slots
    with pytest.raises(ValueError, match="fitted without intents"):
        tags_only.score(X[:3], y[:3])


def test_texts_longer_than_max_length_warn_and_their_last_words_are_outside(tiny_model, slots):
    X, y = slots
    long_x = [w * 6 for w in X]
    long_y = [t * 6 for _, t in y]
    with pytest.warns(UserWarning, match="longer than max_length=16"):
        est = TokenSparseTagger(tiny_model, max_length=16, **FAST).fit(long_x, long_y)
    with pytest.warns(UserWarning, match="longer than max_length=16"):
        pred = est.predict(long_x[:2])
        proba = est.predict_proba(long_x[:2])
    assert [len(p) for p in pred] == [len(w) for w in long_x[:2]] and pred[0][-1] == "O"
    np.testing.assert_array_equal(proba[0][-1], (est.tags_ == "O").astype(float))  # all on O: the cut word


def test_same_seed_same_tags(tiny_model, slots):
    X, y = slots
    a = TokenSparseTagger(tiny_model, **FAST).fit(X, y)
    b = TokenSparseTagger(tiny_model, **FAST).fit(X, y)
    for p, q in zip(a.predict_proba(X), b.predict_proba(X)):
        np.testing.assert_array_equal(p, q)


class WreckedAfterTraining(TokenSparseTagger):
    """Training ends on weights that score worse than the probe, though finite: the selection must not keep them."""

    def stage_training(self, state):
        super().stage_training(state)
        import torch

        with torch.no_grad():
            for p in state.module.parameters():
                if p.requires_grad:
                    p.add_(torch.randn_like(p) * 3.0)


def test_the_fit_never_keeps_less_than_its_frozen_probe(tiny_model, slots):
    X, y = slots
    est = WreckedAfterTraining(tiny_model, strategy="full", **FAST).fit(X, y)
    floor = est.history_[0]["frozen_probe_valid_acc"]
    chosen = est.interpolation_scores_[est.interpolation_][0]
    assert chosen >= floor
    assert min(s for s, _ in est.interpolation_scores_.values()) < floor  # the wrecked end scored below it


def test_no_training_keeps_the_frozen_probe_whatever_the_heads_start_from(tiny_model, slots):
    X, y = slots
    params = dict(FAST, max_epochs=0)
    probe = TokenSparseTagger(tiny_model, **params).fit(X, y)
    other = TokenSparseTagger(tiny_model, head_init="random", **params).fit(X, y)
    assert not other.finetuned_ and other.predict(X) == probe.predict(X)


def test_head_init_random_still_trains_and_keeps_the_floor(tiny_model, slots):
    X, y = slots
    est = TokenSparseTagger(tiny_model, head_init="random", **FAST).fit(X, y)
    assert est.history_[1]["train_loss"] > 0  # the finetune ran from the random heads
    if est.finetuned_:
        assert est.interpolation_scores_[est.interpolation_][0] >= est.history_[0]["frozen_probe_valid_acc"]
    else:  # nothing on the line from the random heads reached the probe: the probe is kept
        probe = TokenSparseTagger(tiny_model, **dict(FAST, max_epochs=0)).fit(X, y)
        assert est.predict(X) == probe.predict(X)


def test_refit_head_and_no_validation_split_fit(tiny_model, slots):
    X, y = slots
    refit = TokenSparseTagger(tiny_model, refit_head=True, **FAST).fit(X, y)
    assert "head_refit" in refit.fit_stages_ and len(refit.predict(X[:3])) == 3
    plain = TokenSparseTagger(tiny_model, validation_fraction=0.0, patience=0, **FAST).fit(X, y)
    assert [r["epoch"] for r in plain.history_] == [1, 2] and plain.finetuned_


def test_patience_zero_runs_every_planned_epoch(tiny_model, slots):
    X, y = slots
    est = TokenSparseTagger(tiny_model, patience=0, **dict(FAST, max_epochs=3)).fit(X, y)
    assert [r["epoch"] for r in est.history_ if r["epoch"]] == [1, 2, 3]


def test_a_word_without_pieces_keeps_the_other_words_tags(tags_only, slots):
    X, _ = slots
    words = list(X[0])
    with_blank = words[:1] + ["\u200b"] + words[1:]  # the tokenizer drops this word entirely
    plain, blank = tags_only.predict_proba([words, with_blank])
    np.testing.assert_allclose(np.delete(blank, 1, axis=0), plain, atol=1e-6)
    np.testing.assert_array_equal(blank[1], (tags_only.tags_ == "O").astype(float))


def test_clone_keeps_parameters_only(joint):
    c = clone(joint)
    assert c.get_params() == joint.get_params() and not hasattr(c, "module_")


def test_grid_search_with_the_f1_scorer(tiny_model, slots):
    X, y = slots
    tags = [t for _, t in y]
    search = GridSearchCV(TokenSparseTagger(tiny_model, **FAST), {"strategy": ["random", "bitfit"]},
                          scoring=slot_f1_scorer, cv=KFold(2)).fit(X, tags)
    assert set(search.cv_results_["param_strategy"]) == {"random", "bitfit"}
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_cross_val_score_and_pipeline(tiny_model, slots):
    X, y = slots
    lower = FunctionTransformer(lambda rows: [[w.lower() for w in r] for r in rows])
    pipe = Pipeline([("lower", lower), ("tagger", TokenSparseTagger(tiny_model, **FAST))])
    scores = cross_val_score(pipe, X, [t for _, t in y], cv=KFold(2), scoring=slot_f1_scorer, error_score="raise")
    assert scores.shape == (2,) and np.isfinite(scores).all()


def test_pickle_round_trip(joint, slots):
    X, _ = slots
    again = pickle.loads(pickle.dumps(joint))
    assert again.predict(X[:5]) == joint.predict(X[:5])


def test_save_and_load_predict_alike(joint, slots, tmp_path):
    X, _ = slots
    path = joint.save(tmp_path / "tagger.safetensors")
    loaded = TokenSparseTagger.load(path)
    assert loaded.predict(X) == joint.predict(X)
    assert loaded.token_group_table() == joint.token_group_table()


def test_a_modified_file_is_refused(joint, tmp_path):
    path = joint.save(tmp_path / "tagger.safetensors")
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="integrity"):
        TokenSparseTagger.load(path)


def test_a_forged_header_with_a_valid_digest_is_refused(joint, tmp_path):
    from safetensors.torch import load_file, save_file

    from sksparseft.io.model_file import digest

    path = joint.save(tmp_path / "tagger.safetensors")
    tensors = load_file(path)
    with open(path, "rb") as fh:
        header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
    meta = header["__metadata__"]
    fitted = json.loads(meta["fitted"])
    fitted["tags"]["values"] = fitted["tags"]["values"][:-1]  # one tag fewer than the head has rows
    meta["fitted"] = json.dumps(fitted)
    meta["digest"] = digest(tensors, meta)
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ModelFileError, match="the model needs|do not fit together|does not fit"):  # not the digest
        TokenSparseTagger.load(path)


def test_neither_estimator_loads_the_others_file(joint, tiny_model, tmp_path):
    from cases import toy_task

    path = joint.save(tmp_path / "tagger.safetensors")
    with pytest.raises(ModelFileError, match="holds a TokenSparseTagger"):
        TokenSparseClassifier.load(path)
    texts, labels = toy_task()
    clf = TokenSparseClassifier(tiny_model, max_epochs=1, contrastive_epochs=0, device="cpu", random_state=0)
    other = clf.fit(texts, labels).save(tmp_path / "classifier.safetensors")
    with pytest.raises(ModelFileError, match="holds a TokenSparseClassifier"):
        TokenSparseTagger.load(other)


@pytest.mark.parametrize("name, options", STRATEGY_CASES, ids=[c[0] for c in STRATEGY_CASES])
def test_every_strategy_fits_saves_and_loads(tiny_model, slots, tmp_path, name, options):
    X, y = slots
    est = TokenSparseTagger(tiny_model, strategy=name, strategy_options=options or None, **FAST).fit(X, y)
    summary = est.mask_summary_
    assert est.strategy_["strategy"] == name and (summary["selected"] > 0 or summary.get("added_parameters", 0) > 0)
    loaded = TokenSparseTagger.load(est.save(tmp_path / f"{name}.safetensors"))
    for a, b in zip(loaded.predict_proba(X[:4]), est.predict_proba(X[:4])):
        np.testing.assert_allclose(a, b, atol=1e-5)
    if STRATEGIES[name].export_error is None:
        check_huggingface_folder(est, X[:4], tmp_path / f"{name}-hf")


def check_huggingface_folder(est, X, folder):
    """The folder loads with transformers alone and tags as the tagger does."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    est.to_huggingface(folder)
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    enc = tokenizer(X, is_split_into_words=True, padding=True, return_tensors="pt")
    with torch.no_grad():
        proba = torch.softmax(model(**enc).logits, dim=-1).numpy()
    for i, expected in enumerate(est.predict_proba(X)):
        firsts = [pos for pos, w in enumerate(enc.word_ids(i)) if w is not None and w != enc.word_ids(i)[pos - 1]]
        np.testing.assert_allclose(proba[i, firsts], expected, atol=1e-4)
    assert [model.config.id2label[j] for j in range(len(est.tags_))] == list(est.tags_)


def test_joint_folder_carries_the_intent_head(joint, slots, tmp_path):
    folder = joint.to_huggingface(tmp_path / "hf")
    readme = (folder / "README.md").read_text()
    code = readme.split("```python\n")[1].split("```")[0].replace(f'folder = "{folder.name}"', f'folder = "{folder}"')
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)  # the folder's own loading code, as a user runs it
    X, _ = slots
    intents, tags = namespace["predict_intent"](X[:5])
    pred = joint.predict(X[:5])
    assert intents == [str(p[0]) for p in pred] and tags == [p[1] for p in pred]


@NEEDS_ONNX
def test_onnx_gives_the_tagger_probabilities(joint, slots, tmp_path):
    import onnx
    import onnxruntime as ort

    X, _ = slots
    path = joint.to_onnx(tmp_path / "tagger.onnx")
    meta = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["sksparseft"])
    assert meta["tags"] == list(joint.tags_) and meta["intents"] == list(joint.intents_)
    enc = joint.tokenizer_(X[:4], is_split_into_words=True, padding=True, return_tensors="np")
    tags, intents = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)})
    np.testing.assert_allclose(intents, joint.predict_intent_proba(X[:4]), atol=1e-4)
    for i, expected in enumerate(joint.predict_proba(X[:4])):
        ids = enc.word_ids(i)
        firsts = [pos for pos, w in enumerate(ids) if w is not None and (pos == 0 or ids[pos - 1] != w)]
        np.testing.assert_allclose(tags[i, firsts], expected, atol=1e-4)


def test_token_groups_are_the_slots_pieces(joint):
    table = joint.token_group_table()
    assert table and {row["slot"] for row in table} <= {"from", "to", "city", "date", "cuisine"}
    assert any(row["group"] in ("thai", "italian", "sushi", "indian") and row["slot"] == "cuisine" for row in table)


def test_explain_names_the_slots_and_the_words_that_hold_them(joint, slots):
    X, _ = slots
    out = joint.explain(X[:3], top=2)
    assert [r["words"] for r in out] == X[:3]
    pred = joint.predict(X[:3])
    for r, p in zip(out, pred):
        assert r["tags"] == p[1]
        from seqeval.metrics.sequence_labeling import get_entities

        # the spans as seqeval reads them (an I- after an O opens a span too)
        assert [s["slot"] for s in r["slots"]] == [kind for kind, _, _ in get_entities(p[1])]
        for s in r["slots"]:
            effects = [c["effect"] for c in s["context"]]
            assert 0.0 <= s["probability"] <= 1.0 and len(effects) == 2 and effects == sorted(effects, reverse=True)


def test_progress_bars_when_verbose(tiny_model, slots, capsys):
    X, y = slots
    TokenSparseTagger(tiny_model, verbose=1, **FAST).fit(X, y)
    captured = capsys.readouterr()
    assert "epoch 1" in captured.out and "training" in captured.err
