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
