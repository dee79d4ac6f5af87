import os

import pytest

from sksparseft.datasets import load_banking77


def test_banking77_splits():
    bunch = load_banking77("train")
    assert len(bunch.data) == len(bunch.target) == 10003
    assert len(bunch.target_names) == 77 and set(bunch.target) == set(bunch.target_names)
    assert all(isinstance(t, str) and t for t in bunch.data)
    assert "Casanueva" in bunch.DESCR and os.path.isfile(bunch.licence_path)
    X, y = load_banking77("test", return_X_y=True)
    assert len(X) == len(y) == 3080


def test_unknown_split():
    with pytest.raises(ValueError, match="split"):
        load_banking77("validation")


def test_banking77_few_shot_subsets():
    X, y = load_banking77("train", return_X_y=True)
    intents = ["card_arrival", "activate_my_card", "age_limit"]
    X_few, y_few = load_banking77("train", return_X_y=True, classes=intents, n_per_class=5, random_state=0)
    assert list(y_few) == [c for c in intents for _ in range(5)]  # five of each, in the order given
    pairs = set(zip(X, y))
    assert all((t, c) in pairs for t, c in zip(X_few, y_few)) and len(set(X_few)) == 15  # drawn without replacement
    again, _ = load_banking77("train", return_X_y=True, classes=intents, n_per_class=5, random_state=0)
    other, _ = load_banking77("train", return_X_y=True, classes=intents, n_per_class=5, random_state=1)
    assert again == X_few and other != X_few
    X_test, y_test = load_banking77("test", return_X_y=True, classes=intents)
    assert set(y_test) == set(intents) and len(y_test) == 120  # every test text of those intents (40 each)
    with pytest.raises(ValueError, match="not BANKING77 intents"):
        load_banking77(classes=["no_such_intent"])


def test_load_atis_reads_the_package_format_and_the_standard_split(tmp_path):
    from sksparseft.datasets import load_atis

    train = [f"fly:O to:O city{i}:B-toloc.city_name <=> atis_flight" for i in range(4478 + 2)]
    (tmp_path / "train_dev").write_text("\n".join(train) + "\n")
    (tmp_path / "test").write_text("fares:O to:O new:B-city_name york:I-city_name <=> atis_airfare\n")
    X, y = load_atis("train", return_X_y=True, folder=tmp_path)
    assert len(X) == 4478 and X[0] == ["fly", "to", "city0"] and y[0] == ("atis_flight", ["O", "O", "B-toloc.city_name"])
    dev = load_atis("dev", folder=tmp_path)
    assert [w[-1] for w in dev.data] == ["city4478", "city4479"] and "ATIS" in dev.DESCR
    assert load_atis("test", return_X_y=True, folder=tmp_path)[1] == [("atis_airfare", ["O", "O", "B-city_name",
                                                                                       "I-city_name"])]


def test_load_atis_names_a_malformed_line(tmp_path):
    import pytest

    from sksparseft.datasets import load_atis

    (tmp_path / "test").write_text("fares:O to boston <=> atis_airfare\n")
    with pytest.raises(ValueError, match="line 1: every word must be written word:TAG"):
        load_atis("test", folder=tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        load_atis("validation", folder=tmp_path)
