"""Which backbone entries are trainable: the mask, kept apart from the delta values and from how it is chosen."""

from __future__ import annotations

from collections import defaultdict

import torch

from .layout import layer_of, module_kind


class SparseMask:
    """Flat indices of the trainable entries of each backbone tensor.

    Parameters
    ----------
    indices : dict of str -> LongTensor
        Sorted flat indices into each tensor (tensors with nothing selected are absent).
    shapes : dict of str -> tuple
        Shape of every backbone tensor, selected or not.
    """

    def __init__(self, indices, shapes):
        self.indices = {k: v.to(torch.long).sort().values for k, v in indices.items() if v.numel()}
        self.shapes = {k: tuple(v) for k, v in shapes.items()}

    @property
    def n_selected(self):
        return int(sum(v.numel() for v in self.indices.values()))

    @property
    def n_total(self):
        return int(sum(_numel(s) for s in self.shapes.values()))

    @classmethod
    def from_scores(cls, scores, n_keep, shapes, always=None):
        """Keep the ``n_keep`` highest-scoring entries over all tensors in ``scores``.

        ``always`` maps tensor names to flat indices that are selected regardless
        of score (the token groups' embedding rows); they do not count against ``n_keep``.
        """
        names = list(scores)
        flat = torch.cat([scores[n].reshape(-1).float() for n in names]) if names else torch.zeros(0)
        n_keep = int(min(max(n_keep, 0), flat.numel()))
        chosen = {}
        if n_keep:
            top = torch.topk(flat, n_keep, sorted=False).indices
            offsets = torch.tensor([0] + [scores[n].numel() for n in names]).cumsum(0)
            which = torch.bucketize(top, offsets[1:], right=True)
            for i, name in enumerate(names):
                sel = top[which == i] - offsets[i]
                if sel.numel():
                    chosen[name] = sel
        for name, idx in (always or {}).items():
            idx = torch.as_tensor(idx, dtype=torch.long)
            chosen[name] = torch.unique(torch.cat([chosen[name], idx])) if name in chosen else torch.unique(idx)
        return cls(chosen, shapes)

    def dense(self, name):
        """The boolean mask of one tensor, shaped like it."""
        m = torch.zeros(_numel(self.shapes[name]), dtype=torch.bool)
        if name in self.indices:
            m[self.indices[name]] = True
        return m.view(self.shapes[name])

    def summary(self):
        """Selected count and density, overall, per layer and per module kind."""
        per_layer = defaultdict(lambda: [0, 0])
        per_module = defaultdict(lambda: [0, 0])
        for name, shape in self.shapes.items():
            n_sel = int(self.indices[name].numel()) if name in self.indices else 0
            for table, key in ((per_layer, layer_of(name)), (per_module, module_kind(name))):
                table[key][0] += n_sel
                table[key][1] += _numel(shape)

        def fmt(table):
            return {k: {"selected": s, "total": t, "density": s / t if t else 0.0} for k, (s, t) in table.items()}

        total = self.n_total
        return {
            "selected": self.n_selected,
            "total": total,
            "density": self.n_selected / total if total else 0.0,
            "tensors_selected": len(self.indices),
            "tensors_total": len(self.shapes),
            "per_layer": fmt(per_layer),
            "per_module": fmt(per_module),
        }


def _numel(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n
