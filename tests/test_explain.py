"""Token-group tables, per-text explanations and plots."""

import matplotlib
import numpy as np
import pytest

from cases import FAST as BASE
from sksparseft import TokenSparseClassifier
from sksparseft.plotting import mask_density_grid, plot_mask, plot_token_groups

matplotlib.use("Agg")


FAST = dict(BASE, random_state=0, validation_fraction=0.0, learning_rate=1e-2)


@pytest.fixture(scope="module")
def fitted(tiny_model, toy_data):
    X, y = toy_data
    return TokenSparseClassifier(tiny_model, n_token_groups=12, **FAST).fit(X, y)


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


def test_plots_draw_groups_and_mask(fitted):
    fig = plot_token_groups(fitted, top=3)
    assert len([ax for ax in fig.axes if ax.get_title()]) == len(fitted.classes_)
    fig = plot_mask(fitted)
    layers, kinds, grid = mask_density_grid(fitted.mask_)
    assert "layer.0" in layers and "attention" in kinds
    assert np.nanmax(grid) > 0 and fig.axes
    with pytest.raises(ValueError, match="not in classes_"):
        plot_token_groups(fitted, classes=["nope"])
