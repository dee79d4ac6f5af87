"""Figures of a fitted model (plotting.py), drawn with the Agg backend: from hand-built fitted attributes,
and once from a model that fit."""

from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sksparseft.model.mask import SparseMask  # noqa: E402
from sksparseft.plotting import mask_density_grid, plot_mask, plot_token_groups  # noqa: E402
from sksparseft.text.tokens import TokenGroup  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _mask():
    shapes = {
        "embeddings.word_embeddings.weight": (10, 4),  # 4 of 40 selected
        "encoder.layer.0.attention.self.query.weight": (4, 4),  # 8 of 16
        "encoder.layer.0.attention.self.key.weight": (4, 4),  # none
        "encoder.layer.1.intermediate.dense.weight": (8, 4),  # all 32
        "encoder.layer.2.output.LayerNorm.weight": (4,),  # 1 of 4
        "encoder.layer.10.output.dense.weight": (4, 8),  # 2 of 32
        "pooler.dense.weight": (4, 4),  # none
    }
    indices = {
        "embeddings.word_embeddings.weight": torch.arange(4),
        "encoder.layer.0.attention.self.query.weight": torch.arange(0, 16, 2),
        "encoder.layer.1.intermediate.dense.weight": torch.arange(32),
        "encoder.layer.2.output.LayerNorm.weight": torch.tensor([3]),
        "encoder.layer.10.output.dense.weight": torch.tensor([5, 31]),
    }
    return SparseMask(indices, shapes)


def test_mask_density_grid_is_the_selected_share_per_layer_and_kind():
    layers, kinds, grid = mask_density_grid(_mask())
    # numeric block order (layer.10 after layer.2), embeddings first, other last
    assert layers == ["embeddings", "layer.0", "layer.1", "layer.2", "layer.10", "other"]
    assert kinds == ["attention", "embeddings", "layernorm", "mlp", "other"]
    nan = np.nan
    expected = np.array([
        # attention embeddings layernorm mlp   other
        [nan, 0.1, nan, nan, nan],  # embeddings
        [0.25, nan, nan, nan, nan],  # layer.0: 8 of query + key's 32
        [nan, nan, nan, 1.0, nan],  # layer.1
        [nan, nan, 0.25, nan, nan],  # layer.2
        [nan, nan, nan, 2 / 32, nan],  # layer.10
        [nan, nan, nan, nan, 0.0],  # other: the pooler, nothing selected
    ])
    np.testing.assert_allclose(grid, expected, equal_nan=True)


def _text(artist):
    return artist.get_text()


def test_plot_mask_draws_the_grid_with_labels_values_and_overall_density():
    mask = _mask()
    est = SimpleNamespace(mask_=mask, mask_summary_=mask.summary(), strategy_={"strategy": "token_sparse"})
    fig = plot_mask(est)
    assert isinstance(fig, Figure)
    fig.canvas.draw()
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # the heat map and its colour bar
    layers, kinds, grid = mask_density_grid(mask)
    np.testing.assert_allclose(np.ma.filled(ax.images[0].get_array(), np.nan), 100 * grid, equal_nan=True)
    assert [_text(t) for t in ax.get_xticklabels()] == kinds
    assert [_text(t) for t in ax.get_yticklabels()] == layers
    # one value per cell that holds tensors, in percent
    values = sorted(_text(t) for t in ax.texts)
    assert values == sorted(f"{100 * v:.2f}" for v in grid[~np.isnan(grid)])
    density = 100 * (4 + 8 + 32 + 1 + 2) / (40 + 16 + 16 + 32 + 4 + 32 + 16)
    assert ax.get_title() == f"Where the mask sits ({density:.2f}% of the backbone)"
    assert fig.axes[1].get_ylabel() == "% of entries selected"


def test_plot_mask_of_an_adapter_strategy_is_refused():
    est = SimpleNamespace(mask_=None, mask_summary_=None, strategy_={"strategy": "lora"})
    with pytest.raises(ValueError, match="strategy 'lora' trains adapters, not a mask of the backbone"):
        plot_mask(est)


def _group(text, score, label):
    return TokenGroup(text=text, token_ids=(1,), score=score, label=label, count=3)


def _groups_est(classes):
    groups = [_group("card", 0.9, classes[0]), _group("arrive", 0.4, classes[0]), _group("late", 0.6, classes[0]),
              _group("refund", 0.8, classes[1])]
    return SimpleNamespace(classes_=np.asarray(classes), token_groups_=groups)


def _bars(ax):
    labels = [_text(t) for t in ax.get_yticklabels()]
    return labels, [p.get_width() for p in ax.patches]


def test_plot_token_groups_draws_the_top_groups_of_each_class_best_on_top():
    est = _groups_est(["card", "refund", "pin"])
    fig = plot_token_groups(est, top=2, ncols=2)
    assert isinstance(fig, Figure)
    fig.canvas.draw()
    axes = fig.axes
    assert len(axes) == 4  # 2 x 2 for three classes
    assert [ax.get_title() for ax in axes[:3]] == ["card", "refund", "pin"]
    labels, widths = _bars(axes[0])
    assert labels == ["late", "card"]  # the best ends up at the top of a barh
    np.testing.assert_allclose(widths, [0.6, 0.9])
    assert _bars(axes[1]) == (["refund"], [pytest.approx(0.8)])
    # a class without token groups says so, and the spare panel is hidden
    assert not axes[2].patches and [_text(t) for t in axes[2].texts] == ["no token group"]
    assert not axes[3].axison
    assert fig._suptitle.get_text() == "Top token groups per class"


def test_plot_token_groups_draws_the_first_six_classes_or_those_asked_for():
    classes = [f"c{i}" for i in range(8)]
    fig = plot_token_groups(_groups_est(classes))
    assert [ax.get_title() for ax in fig.axes if ax.axison] == classes[:6]
    fig = plot_token_groups(_groups_est(classes), classes=["c1", "c7"])
    assert [ax.get_title() for ax in fig.axes if ax.axison] == ["c1", "c7"]
    assert len(fig.axes) == 3  # one row of ncols=3


def test_plot_token_groups_with_numeric_classes():
    est = _groups_est(np.array([3, 7], dtype=np.int64))
    fig = plot_token_groups(est, classes=[7])
    fig.canvas.draw()
    assert fig.axes[0].get_title() == "7"
    assert _bars(fig.axes[0])[0] == ["refund"]
    with pytest.raises(ValueError, match=r"classes \[5\] are not in classes_"):
        plot_token_groups(est, classes=[5, 7])


# -- a fitted model ---------------------------------------------------------------------
@pytest.fixture
def fitted(grouped_model):
    return grouped_model


def test_plots_draw_groups_and_mask(fitted):
    fig = plot_token_groups(fitted, top=3)
    assert len([ax for ax in fig.axes if ax.get_title()]) == len(fitted.classes_)
    fig = plot_mask(fitted)
    layers, kinds, grid = mask_density_grid(fitted.mask_)
    assert "layer.0" in layers and "attention" in kinds
    assert np.nanmax(grid) > 0 and fig.axes
    with pytest.raises(ValueError, match="not in classes_"):
        plot_token_groups(fitted, classes=["nope"])
