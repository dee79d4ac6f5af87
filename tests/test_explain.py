"""Token-group tables and per-text explanations (the plots: tests/test_plotting.py)."""

import numpy as np
import pytest



@pytest.fixture
def fitted(grouped_model):
    return grouped_model


def test_token_group_table_is_per_class_and_ranked(fitted):
    rows = fitted.token_group_table(top=2)
    assert rows and {r["class"] for r in rows} <= set(fitted.classes_)
    for c in fitted.classes_:
        mine = [r for r in rows if r["class"] == c]
        assert [r["rank"] for r in mine] == list(range(1, len(mine) + 1)) and len(mine) <= 2
        assert [r["score"] for r in mine] == sorted((r["score"] for r in mine), reverse=True)


def test_explain_measures_each_group_by_removing_it(fitted):
    texts = ["i want a refund please now", "zzz qqq"]
    out = fitted.explain(texts, top=3)
    assert [o["text"] for o in out] == texts
    np.testing.assert_array_equal([o["prediction"] for o in out], fitted.predict(texts))
    np.testing.assert_allclose([o["probability"] for o in out], fitted.predict_proba(texts).max(axis=1), atol=1e-6)
    groups = out[0]["groups"]
    assert groups and len(groups) <= 3
    assert [abs(g["effect"]) for g in groups] == sorted((abs(g["effect"]) for g in groups), reverse=True)
    # the effect is the probability drop when the group's words are gone
    g = groups[0]
    without = " ".join(texts[0].replace(g["group"], " ").split())
    pred_col = list(fitted.classes_).index(out[0]["prediction"])
    expected = out[0]["probability"] - fitted.predict_proba([without])[0, pred_col]
    assert g["effect"] == pytest.approx(expected, abs=1e-4)
    assert out[1]["groups"] == []  # no known group in it

