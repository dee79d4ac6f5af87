import numpy as np
import pytest

from sksparseft.text.tokens import TokenGroup, discover_token_groups, group_positions, group_token_ids, occurrences


def decode(ids):
    return " ".join(f"t{i}" for i in ids)


def test_predictive_ngram_ranks_above_uniform_token():
    # token 7 occurs in every text of class 0 only; token 1 occurs everywhere
    seqs = [[1, 7, 2], [1, 7, 3], [7, 1, 4], [1, 5], [1, 6], [1, 5, 6]]
    y = np.array([0, 0, 0, 1, 1, 1])
    groups = discover_token_groups(seqs, y, 2, n_groups=10, max_ngram=2, min_count=2, decode=decode, classes=np.array(["a", "b"]))
    texts = [g.text for g in groups]
    assert texts[0] == "t7"
    assert groups[0].label == "a" and groups[0].count == 3
    assert "t1" not in texts[:2]
    scores = [g.score for g in groups]
    assert scores == sorted(scores, reverse=True)


def test_min_count_and_n_groups_are_respected():
    seqs = [[1, 2], [1, 3], [4], [4, 9]]
    y = np.array([0, 0, 1, 1])
    groups = discover_token_groups(seqs, y, 2, n_groups=1, max_ngram=2, min_count=2, decode=decode)
    assert len(groups) == 1
    groups = discover_token_groups(seqs, y, 2, n_groups=50, max_ngram=2, min_count=2, decode=decode)
    assert all(g.count >= 2 for g in groups)
    assert {g.token_ids for g in groups} == {(1,), (4,)}


def test_pieces_that_only_occur_inside_a_longer_group_are_dropped():
    # "over ##draft" = (10, 11) always together; 10 and 11 never alone
    seqs = [[10, 11, 1], [10, 11, 2], [10, 11, 3], [5, 1], [5, 2], [5, 3]]
    y = np.array([0, 0, 0, 1, 1, 1])
    groups = discover_token_groups(seqs, y, 2, n_groups=20, max_ngram=2, min_count=2, decode=decode)
    ids = {g.token_ids for g in groups}
    assert (10, 11) in ids
    assert (10,) not in ids and (11,) not in ids


def test_group_positions_marks_every_occurrence():
    enc = {
        "input_ids": np.array([[101, 10, 11, 5, 10, 102], [101, 5, 102, 0, 0, 0]]),
        "attention_mask": np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]),
    }
    from sksparseft.text.tokens import TokenGroup

    groups = [TokenGroup("x", (10, 11), 1.0, 0, 2), TokenGroup("y", (5,), 1.0, 1, 2)]
    focus = group_positions(enc, groups)
    assert focus.tolist() == [[0, 1, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0]]
    assert group_token_ids(groups) == [5, 10, 11]


def test_no_candidates_gives_no_groups():
    assert discover_token_groups([[1], [2]], np.array([0, 1]), 2, n_groups=5, max_ngram=2, min_count=3, decode=decode) == []


@pytest.mark.parametrize("max_ngram", [1, 3])
def test_groups_never_longer_than_max_ngram(max_ngram):
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(0, 20, size=8)) for _ in range(60)]
    y = rng.integers(0, 3, size=60)
    groups = discover_token_groups(seqs, y, 3, n_groups=100, max_ngram=max_ngram, min_count=2, decode=decode)
    assert groups and all(1 <= len(g.token_ids) <= max_ngram for g in groups)


def test_occurrences_finds_every_instance_of_a_group():
    groups = [TokenGroup("a b", (1, 2), 1.0, "x", 3), TokenGroup("c", (3,), 0.5, "y", 2)]
    assert occurrences([1, 2, 5, 1, 2, 3], groups) == {0: [0, 1, 3, 4], 1: [5]}
    assert occurrences([2, 1, 5], groups) == {}


def test_encode_warns_how_many_texts_it_cuts_only_when_asked():
    import warnings

    from sksparseft.model.backbone import load_backbone
    from sksparseft.text.tokens import encode

    tokenizer = load_backbone("all-MiniLM-L6-v2")[0]
    texts = ["short one", "a b c d e f g h i j k l", "one two three four"]  # 4, 14 and 6 tokens with [CLS], [SEP]
    with pytest.warns(UserWarning, match=r"1 of 3 training texts are longer than max_length=6 tokens") as caught:
        enc = encode(tokenizer, texts, 6, warn="training texts")
    assert len(caught) == 1 and enc["input_ids"].shape == (3, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode(tokenizer, texts, 6)  # no warn: predict's path
        encode(tokenizer, texts, 14, warn="training texts")  # the longest exactly fits
    with pytest.warns(UserWarning, match=r"2 of 3 training texts .* max_length=5 tokens"):
        encode(tokenizer, texts, 5, warn="training texts")
