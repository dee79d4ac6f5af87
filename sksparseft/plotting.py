"""Matplotlib figures of a fitted model: top token groups per class, and where the mask sits."""

from __future__ import annotations

import numpy as np

from .explain import token_group_table
from .model.layout import layer_of, module_kind


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install matplotlib") from exc
    return plt


def plot_token_groups(est, classes=None, top=8, ncols=3):
    """Bar charts of the ``top`` token groups of each class (score = information gain x log df).

    Parameters
    ----------
    est : fitted TokenSparseClassifier
    classes : list, optional
        Which classes to draw (default: the first six of ``classes_``).
    top : int
    ncols : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    classes = list(est.classes_[:6]) if classes is None else list(classes)
    unknown = [c for c in classes if c not in set(est.classes_.tolist())]
    if unknown:
        raise ValueError(f"classes {unknown} are not in classes_")
    rows = token_group_table(est.token_groups_, classes, top=top)
    nrows = max(1, -(-len(classes) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 0.35 * top * nrows + 1.2 * nrows), squeeze=False)
    for ax, c in zip(axes.flat, classes):
        mine = [r for r in rows if r["class"] == c][::-1]
        ax.barh([r["group"] for r in mine], [r["score"] for r in mine], color="#4c72b0")
        ax.set_title(str(c), fontsize=10)
        ax.tick_params(labelsize=8)
        if not mine:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.text(0.5, 0.5, "no token group", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(classes):]:
        ax.axis("off")
    fig.suptitle("Top token groups per class")
    fig.tight_layout()
    return fig


def mask_density_grid(mask):
    """``(layers, kinds, density)``: the share of entries selected, per block and module kind."""
    cells = {}
    for name, shape in mask.shapes.items():
        key = (layer_of(name), module_kind(name))
        sel = int(mask.indices[name].numel()) if name in mask.indices else 0
        s, t = cells.get(key, (0, 0))
        cells[key] = (s + sel, t + int(np.prod(shape)))

    def order(layer):
        if layer.startswith("layer."):
            return (1, int(layer[6:]))
        return (0 if layer == "embeddings" else 2, 0)

    layers = sorted({k[0] for k in cells}, key=order)
    kinds = sorted({k[1] for k in cells})
    grid = np.full((len(layers), len(kinds)), np.nan)
    for (layer, kind), (s, t) in cells.items():
        grid[layers.index(layer), kinds.index(kind)] = s / t if t else np.nan
    return layers, kinds, grid


def plot_mask(est):
    """Heat map of the mask's density per transformer block and module kind.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if est.mask_ is None:
        raise ValueError(f"strategy {est.strategy_['strategy']!r} trains adapters, not a mask of the backbone")
    plt = _pyplot()
    layers, kinds, grid = mask_density_grid(est.mask_)
    fig, ax = plt.subplots(figsize=(1.4 * len(kinds) + 2.5, 0.4 * len(layers) + 1.5))
    im = ax.imshow(100 * grid, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_yticks(range(len(layers)), layers)
    for i in range(len(layers)):
        for j in range(len(kinds)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{100 * grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if grid[i, j] < np.nanmax(grid) / 2 else "black")
    fig.colorbar(im, ax=ax, label="% of entries selected")
    ax.set_title(f"Where the mask sits ({100 * est.mask_summary_['density']:.2f}% of the backbone)")
    fig.tight_layout()
    return fig
