"""What fit and predict accept (validation.py): texts, labels, weights, class weights, the held-out split."""

import warnings

import numpy as np
import pandas as pd
import pytest

from sksparseft.validation import (
    check_unknown_label, class_weights, drop_unweighted, label_names, validate_labelled, validate_sample_weight,
    validate_texts, validate_y, validation_split,
)

TEXTS = ["my card is late", "refund please", "pin"]


@pytest.mark.parametrize("X", [
    list(TEXTS), tuple(TEXTS), np.array(TEXTS), np.array(TEXTS, dtype=object), np.array(TEXTS)[:, None],
    pd.Series(TEXTS, index=[10, 20, 30]), pd.DataFrame({"text": TEXTS}, index=[5, 6, 7]),
    (t for t in TEXTS), {t: 1 for t in TEXTS}.keys(),
], ids=["list", "tuple", "ndarray", "object-ndarray", "column-ndarray", "series", "1-col-frame", "generator",
        "dict-keys"])
def test_validate_texts_accepts_one_dimensional_iterables_of_str(X):
    texts = validate_texts(X)
    assert type(texts) is list and texts == TEXTS
    assert all(isinstance(t, str) for t in texts)


def test_validate_texts_gives_a_new_list():
    X = list(TEXTS)
    texts = validate_texts(X)
    texts[0] = "changed"
    assert X == TEXTS


@pytest.mark.parametrize("X, error, message", [
    (None, TypeError, "X must be an iterable of strings, got None"),
    ("one text", TypeError, "got a single str; wrap it in a list"),
    (b"one text", TypeError, "got a single bytes; wrap it in a list"),
    (5, TypeError, "X must be an iterable of strings, got int"),
    (["ok", 3], TypeError, r"X\[1\] is a int, not a str: 3"),
    (["ok", b"bytes"], TypeError, r"X\[1\] is a bytes, not a str"),
    (["ok", "fine", None], ValueError, r"X\[2\] is missing \(None\); drop or fill missing texts"),
    (pd.Series(["ok", np.nan]), ValueError, r"X\[1\] is missing \(nan\)"),
    (pd.DataFrame({"a": TEXTS, "b": TEXTS}), ValueError, r"one-dimensional \(one text per row\), got shape \(3, 2\)"),
    (np.array([TEXTS, TEXTS]), ValueError, r"got shape \(2, 3\)"),
], ids=["none", "str", "bytes", "int", "int-entry", "bytes-entry", "none-entry", "nan-entry", "2-col-frame",
        "2d-array"])
def test_validate_texts_rejects_with_a_message_naming_the_problem(X, error, message):
    with pytest.raises(error, match=message):
        validate_texts(X)


def test_validate_texts_names_the_argument_and_cuts_long_entries():
    with pytest.raises(TypeError, match=r"^texts\[0\] is a list, not a str") as info:
        validate_texts([list(range(1000))], name="texts")
    assert len(str(info.value)) < 120


def test_lone_surrogates_are_replaced_not_passed_on():
    texts = validate_texts(["ok", "bad \ud800 text"])
    assert texts == ["ok", "bad ? text"]
    texts[1].encode("utf-8")  # now encodable


def test_validate_labelled_returns_sorted_classes_and_their_codes():
    texts, y, classes, y_enc = validate_labelled(TEXTS + ["x"], ["pin", "card", "pin", "refund"])
    assert texts == TEXTS + ["x"]
    assert classes.tolist() == ["card", "pin", "refund"]
    assert classes[y_enc].tolist() == y.tolist() == ["pin", "card", "pin", "refund"]


def test_validate_labelled_keeps_numeric_label_dtype():
    _, y, classes, y_enc = validate_labelled(TEXTS, np.array([7, 3, 7], dtype=np.int32))
    assert y.dtype == np.int32 and classes.dtype == np.int32
    assert classes.tolist() == [3, 7] and y_enc.tolist() == [1, 0, 1]


@pytest.mark.parametrize("X, y, message", [
    (TEXTS, ["a", "b"], "X and y have different lengths: 3 texts, 2 labels"),
    (TEXTS[:2], ["a", "b", "a"], "X and y have different lengths: 2 texts, 3 labels"),
    ([], [], "X is empty"),
    (TEXTS, ["a", "a", "a"], r"y has a single class \('a'\)"),
    (TEXTS, ["a", None, "b"], r"y\[1\] is missing"),
    (TEXTS, None, "y is required"),
    (TEXTS, np.zeros((3, 2, 2)), "y must be one-dimensional"),
])
def test_validate_labelled_rejects_what_cannot_be_fitted(X, y, message):
    with pytest.raises(ValueError, match=message):
        validate_labelled(X, y)


def test_labels_mixing_strings_and_numbers_are_refused():
    with pytest.raises(TypeError, match="mixes strings and other types"):
        validate_y(["a", 1, "b"], 3)


def test_a_two_dimensional_indicator_is_multilabel():
    indicator = np.array([[1, 0], [0, 1], [1, 1]])
    texts, y, classes, y_enc = validate_labelled(TEXTS, indicator)
    assert classes.tolist() == [0, 1] and y_enc is y and y.tolist() == indicator.tolist()
    with pytest.raises(ValueError, match=r"y column 0 \('a'\) is all one"):
        validate_y(pd.DataFrame({"a": [1, 1, 1], "b": [0, 1, 0]}), 3)
    with pytest.raises(ValueError, match="holds other values"):
        validate_y(np.array([[1, 0], [0, 2], [1, 1]]), 3)


def test_sample_weight_checks():
    assert validate_sample_weight(None, 3) is None
    np.testing.assert_array_equal(validate_sample_weight(2, 3), [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(validate_sample_weight([1, 0, 2], 3), [1.0, 0.0, 2.0])
    for weights, message in (([1, 2], "2 entries for 3 texts"), ([1, -1, 1], r"sample_weight\[1\] is negative"),
                             ([1, np.nan, 1], r"sample_weight\[1\] is nan"), ([0, 0, 0], "zero for every text")):
        with pytest.raises(ValueError, match=message):
            validate_sample_weight(weights, 3)


def test_class_weights():
    classes = np.array(["a", "b"], dtype=object)
    y = np.array(["a", "a", "a", "b"], dtype=object)
    assert class_weights(None, classes, y) is None
    np.testing.assert_allclose(class_weights("balanced", classes, y), [4 / (2 * 3), 4 / (2 * 1)])
    np.testing.assert_allclose(class_weights({"b": 3.0, "a": 1.0}, classes, y), [1.0, 3.0])  # in classes' order
    np.testing.assert_allclose(class_weights({"b": 3.0}, classes, y), [1.0, 3.0])  # unnamed classes: 1
    with pytest.raises(ValueError, match=r"class_weight names classes not in y: \['c'\]"):
        class_weights({"a": 1.0, "c": 2.0}, classes, y)
    with pytest.raises(ValueError, match="multi-label"):
        class_weights("balanced", np.arange(2), np.array([[1, 0], [0, 1]]))


def test_drop_unweighted_without_weights_changes_nothing():
    X, y = list(TEXTS), ["a", "b", "a"]
    assert drop_unweighted(X, y, None) == (X, y, None)
    texts, y_out, w = drop_unweighted(X, y, [1, 2, 3])  # none is zero
    assert texts == TEXTS and y_out is y and w.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("y", [["a", "b", "a"], np.array(["a", "b", "a"]), pd.Series(["a", "b", "a"], index=[7, 8, 9])],
                         ids=["list", "ndarray", "series"])
def test_drop_unweighted_leaves_out_zero_weight_texts_with_their_labels(y):
    texts, y_out, w = drop_unweighted(pd.Series(TEXTS), y, [1.0, 0.0, 2.0])
    assert texts == [TEXTS[0], TEXTS[2]]
    assert list(y_out) == ["a", "a"] and w.tolist() == [1.0, 2.0]
    if isinstance(y, pd.Series):
        assert list(y_out.index) == [7, 9]  # rows by position, not by index label


def test_drop_unweighted_leaves_a_length_mismatch_to_validate_labelled():
    texts, y, w = drop_unweighted(TEXTS, ["a", "b"], [1.0, 0.0, 1.0])
    assert texts == TEXTS and y == ["a", "b"] and len(w) == 3
    with pytest.raises(ValueError, match=r"sample_weight\[0\] is negative"):
        drop_unweighted(TEXTS, ["a", "b", "c"], [-1.0, 0.0, 1.0])


def test_label_names():
    assert label_names(pd.DataFrame({"refund": [0, 1], 3: [1, 0]})) == ["refund", "3"]
    assert label_names(pd.DataFrame({"only": [0, 1]})) is None
    assert label_names(np.array([[0, 1], [1, 0]])) is None
    assert label_names(["a", "b"]) is None


@pytest.mark.parametrize("unknown, y", [
    ("unknown", np.array(["a", "b"], dtype=object)),
    (-1, np.array([0, 1])),
    (3.0, np.array([0, 1])),
    (np.int64(9), np.array([0, 1], dtype=np.int32)),
    (0.5, np.array([0.0, 1.0])),
])
def test_check_unknown_label_accepts_a_label_of_ys_kind(unknown, y):
    check_unknown_label(unknown, y)


@pytest.mark.parametrize("unknown, y, kind", [
    (-1, np.array(["a", "b"], dtype=object), "strings"),
    ("unknown", np.array([0, 1]), r"numbers \(int64\)"),
    (2.5, np.array([0, 1], dtype=np.int32), r"numbers \(int32\)"),
    (None, np.array([0, 1]), "numbers"),
])
def test_check_unknown_label_refuses_a_label_of_another_kind(unknown, y, kind):
    with pytest.raises(TypeError, match=f"unknown_label={unknown!r} cannot be mixed with the labels of y, which are {kind}"):
        check_unknown_label(unknown, y)


@pytest.mark.parametrize("fraction", [0, 0.0, None])
def test_no_fraction_no_split_and_no_warning(fraction):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, valid = validation_split(np.repeat([0, 1], 5), fraction, 0)
    assert valid is None and train.tolist() == list(range(10))


def test_validation_split_is_stratified_sorted_and_disjoint():
    y = np.repeat([0, 1, 2], 8)
    train, valid = validation_split(y, 0.25, 0)
    assert len(valid) == 6 and len(train) == 18
    assert train.tolist() == sorted(train) and valid.tolist() == sorted(valid)
    assert sorted(train.tolist() + valid.tolist()) == list(range(24))
    assert np.bincount(y[valid]).tolist() == [2, 2, 2]


def test_validation_split_rounds_the_held_out_count_up():
    train, valid = validation_split(np.repeat([0, 1], 10), 0.01, 0)
    assert len(valid) == 1 and len(train) == 19  # ceil(0.01 * 20): one text, too few to stratify


def test_validation_split_is_reproducible_by_seed():
    y = np.repeat([0, 1, 2], 10)
    first = validation_split(y, 0.3, 4)
    again = validation_split(y, 0.3, 4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    others = [validation_split(y, 0.3, seed)[1] for seed in (5, 6, 7)]
    assert any(not np.array_equal(first[1], o) for o in others)
    assert np.array_equal(validation_split(y, 0.3, None)[1], validation_split(y, 0.3, 0)[1])


def test_validation_split_of_too_few_texts_warns_and_trains_on_all():
    with pytest.warns(UserWarning, match="3 texts are too few for validation_fraction=0.5"):
        train, valid = validation_split(np.array([0, 1, 0]), 0.5, 0)
    assert valid is None and train.tolist() == [0, 1, 2]


def test_validation_split_falls_back_to_random_when_a_class_is_too_small():
    y = np.array([0] * 9 + [1])
    train, valid = validation_split(y, 0.2, 0)
    assert len(valid) == 2 and len(train) == 8
    y2 = np.array([[1, 0], [0, 1]] * 5)  # multi-label indicator
    train, valid = validation_split(y2, 0.3, 0)
    assert len(valid) == 3 and sorted(train.tolist() + valid.tolist()) == list(range(10))
