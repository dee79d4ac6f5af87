"""The real embedded model on a small real BANKING77 subset."""

import numpy as np
import pytest

from sksparseft import TokenSparseClassifier
from sksparseft.datasets import load_banking77


@pytest.mark.slow
def test_embedded_model_on_banking77_subset():
    X, y = load_banking77("train", return_X_y=True)
    Xt, yt = load_banking77("test", return_X_y=True)
    classes = sorted(set(y))[:10]
    rng = np.random.default_rng(0)
    train = [i for c in classes for i in rng.choice(np.flatnonzero(y == c), 20, replace=False)]
    test = [i for i in range(len(yt)) if yt[i] in classes]
    clf = TokenSparseClassifier(random_state=0, max_epochs=2, device="cpu")
    clf.fit([X[i] for i in train], y[train])
    acc = clf.score([Xt[i] for i in test], yt[test])
    assert acc > 0.5  # chance is 0.1
    assert clf.mask_summary_["density"] < 0.05
    assert any(g.label in classes for g in clf.token_groups_)
