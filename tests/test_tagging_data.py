"""sksparseft.tagging.data and .targets: words, tags, their pieces, and the scores."""

import numpy as np
import pytest
import torch

from sksparseft.model.backbone import load_backbone
from sksparseft.tagging.data import (IGNORE, align, as_iob2, is_joint, tag_scheme, targets, validate_tags,
                                     validate_words)
from sksparseft.tagging.targets import TokenTags, frame_accuracy_score, intent_accuracy_score, slot_f1_score


def test_texts_split_on_whitespace_and_word_lists_kept():
    assert validate_words(["fly to  new york", ["new", "york"]]) == [["fly", "to", "new", "york"], ["new", "york"]]


@pytest.mark.parametrize("X, message", [
    (["fly to boston", "   "], r"X\[1\] is empty"),
    ([["fly", ""]], r"X\[0\]\[1\] is an empty word"),
    ([None], r"X\[0\] is missing"),
    ("fly to boston", "wrap a single text in a list"),
])
def test_bad_texts_name_the_entry(X, message):
    with pytest.raises((ValueError, TypeError), match=message):
        validate_words(X)


def test_tag_count_must_match_word_count():
    words = validate_words(["fly to boston", "hi"])
    with pytest.raises(ValueError, match=r"y\[0\] has 2 tags but X\[0\] has 3 words"):
        validate_tags([["O", "O"], ["O"]], words)
    with pytest.raises(ValueError, match="X holds 2 texts but y holds 1"):
        validate_tags([["O", "O", "O"]], words)


def test_joint_pairs_are_told_from_tag_lists():
    assert is_joint([("flight", ["O", "B-city"])])
    assert not is_joint([["O", "B-city"]])
    tags, intents = validate_tags([("flight", ["O", "B-city"])], [["to", "boston"]])
    assert tags == [["O", "B-city"]] and intents == ["flight"]


def test_plain_labels_become_iob2_runs():
    assert tag_scheme([["O", "B-city", "I-city"]]) == "iob2"
    assert tag_scheme([["O", "city", "city", "date"]]) == "plain"
    assert as_iob2([["O", "city", "city", "date"]], "plain") == [["O", "B-city", "I-city", "B-date"]]


def test_a_word_tag_sits_on_its_first_piece(tiny_model):
    tokenizer, _, _ = load_backbone(tiny_model)
    words = [["fly", "to", "tokyo"], ["unbelievably", "cheap"]]
    enc = align(tokenizer, words, 32, tag_ids=[[0, 0, 1], [2, 0]])
    for r, row in enumerate(words):
        firsts = np.flatnonzero(enc["word_index"][r] >= 0)
        assert enc["word_index"][r, firsts].tolist() == list(range(len(row)))
        assert enc["labels"][r, firsts].tolist() == [[0, 0, 1], [2, 0]][r]
        others = np.setdiff1d(np.arange(enc["labels"].shape[1]), firsts)
        assert (enc["labels"][r, others] == IGNORE).all()
    # "unbelievably" is more than one piece: its later pieces belong to word 0 but carry no tag
    assert (enc["piece_word"][1] == 0).sum() > 1


def test_words_past_max_length_warn_and_are_counted(tiny_model):
    tokenizer, _, _ = load_backbone(tiny_model)
    with pytest.warns(UserWarning, match="1 of 2 training texts are longer than max_length=6"):
        enc = align(tokenizer, [["a"] * 10, ["b"]], 6, tag_ids=[[0] * 10, [0]], warn="training texts")
    assert enc["n_seen"].tolist() == [4, 1] and enc["n_words"].tolist() == [10, 1]


def test_token_loss_reads_tagged_pieces_and_the_intent():
    kind = TokenTags()
    tokens = torch.zeros(1, 3, 2)
    tokens[0, 1, 1] = 5.0
    target = torch.tensor([[IGNORE, IGNORE, 1, IGNORE]])
    expected = torch.nn.functional.cross_entropy(tokens[0, 1:2], torch.tensor([1]))
    assert torch.isclose(kind.loss(tokens, target), expected)
    intent = torch.tensor([[0.0, 2.0]])
    joint = kind.loss((tokens, intent), torch.tensor([[1, IGNORE, 1, IGNORE]]))
    assert torch.isclose(joint, expected + torch.nn.functional.cross_entropy(intent, torch.tensor([1])))


def test_targets_put_the_intent_first():
    enc = {"labels": np.array([[IGNORE, 3, IGNORE]]), "intent": np.array([7])}
    assert targets(enc).tolist() == [[7, IGNORE, 3, IGNORE]]


def test_slot_f1_is_entity_level():
    true = [["O", "B-city", "I-city", "O", "B-date"]]
    assert slot_f1_score(true, true) == 1.0
    # half a city is a wrong span, not half right: precision 1/2, recall 1/2
    assert slot_f1_score(true, [["O", "B-city", "O", "O", "B-date"]]) == pytest.approx(0.5)
    assert slot_f1_score([["O"]], [["O"]]) == 1.0


def test_joint_scores():
    true = [("a", ["B-x", "O"]), ("b", ["O", "O"])]
    pred = [("a", ["B-x", "O"]), ("a", ["O", "O"])]
    assert slot_f1_score(true, pred) == 1.0
    assert intent_accuracy_score(true, pred) == 0.5
    assert frame_accuracy_score(true, pred) == 0.5


def test_plain_labels_score_as_runs():
    true = [["O", "city", "city", "date"]]
    assert slot_f1_score(true, true) == 1.0
    assert slot_f1_score(true, [["O", "city", "O", "date"]]) == pytest.approx(0.5)


def test_a_span_may_open_with_an_inside_tag():
    from sksparseft.tagging.stages import _spans

    assert _spans(["O", "I-city", "I-city", "B-date"], "iob2") == [({1, 2}, "city"), ({3}, "date")]


def test_constrained_decoding_is_the_best_valid_sequence():
    import itertools

    from sksparseft.tagging.decoding import allowed_transitions, decode

    tags = ["B-x", "I-x", "O", "B-y", "I-y"]
    assert allowed_transitions(tags).shape == (6, 5)

    def is_valid(seq):  # IOB2, from the tag strings: an I-x opens nothing, it follows a B-x or an I-x
        names = ["O"] + [tags[t] for t in seq]
        return all(not b.startswith("I-") or a in (f"B-{b[2:]}", b) for a, b in zip(names, names[1:]))

    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.dirichlet(np.ones(len(tags)), size=4)
        valid = [seq for seq in itertools.product(range(len(tags)), repeat=4) if is_valid(seq)]
        best = max(valid, key=lambda seq: sum(np.log(p[i, t]) for i, t in enumerate(seq)))
        assert decode([p], tags, "iob2", "constrained") == [[tags[t] for t in best]]
        assert decode([p], tags, "iob2", "argmax") == [[tags[t] for t in p.argmax(axis=1)]]
