"""Property-based tests: arbitrary unicode texts and label sets through fit/predict on the tiny model."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cases import FAST as BASE
from sksparseft import TokenSparseClassifier


FAST = dict(BASE, max_epochs=1, random_state=0)

texts = st.text(alphabet=st.characters(codec=None), min_size=0, max_size=40)
labels = st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b", "ç", "🙂", ""]))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.lists(st.tuples(texts, labels), min_size=2, max_size=16), new=st.lists(texts, max_size=5))
def test_any_unicode_text_and_label_set(tiny_model, data, new):
    X = [t for t, _ in data]
    y = [lab for _, lab in data]
    if len({type(v) for v in y}) > 1:
        y = [str(v) for v in y]  # mixed types are rejected on purpose (tested elsewhere)
    clf = TokenSparseClassifier(tiny_model, **FAST)
    if len(set(y)) < 2:
        with pytest.raises(ValueError, match="single class"):
            clf.fit(X, y)
        return
    clf.fit(X, y)
    proba = clf.predict_proba(X + new)
    assert proba.shape == (len(X) + len(new), len(set(y)))
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert set(clf.predict(new)) <= set(clf.classes_)
