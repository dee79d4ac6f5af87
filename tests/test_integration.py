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


def _banking77_subset(n_classes=8, per_class=15, seed=0):
    X, y = load_banking77("train", return_X_y=True)
    Xt, yt = load_banking77("test", return_X_y=True)
    rng = np.random.default_rng(seed)
    classes = sorted(set(y))[: n_classes + 4]  # the last 4: intents the model never sees
    known, unknown = classes[:n_classes], classes[n_classes:]
    train = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in known])
    return [X[i] for i in train], y[train], Xt, yt, known, unknown


@pytest.mark.slow
def test_embedded_model_rejects_unseen_intents_more_than_known_ones():
    X, y, Xt, yt, known, unknown = _banking77_subset()
    clf = TokenSparseClassifier(unknown_label="unknown", random_state=0, max_epochs=2, device="cpu",
                                validation_fraction=0.2).fit(X, y)
    in_scope = np.isin(yt, known)
    pred_in, pred_out = clf.predict([Xt[i] for i in np.flatnonzero(in_scope)]), clf.predict(
        [Xt[i] for i in np.flatnonzero(np.isin(yt, unknown))])
    assert np.mean(pred_out == "unknown") > np.mean(pred_in == "unknown") + 0.2
    assert np.mean(pred_in == yt[in_scope]) > 0.5


@pytest.mark.slow
def test_embedded_model_predicts_both_requests_of_joined_messages():
    import pandas as pd

    X, y, Xt, yt, known, _ = _banking77_subset()
    rng = np.random.default_rng(1)

    def joined(texts, labels, n):
        rows = []
        while len(rows) < n:
            a, b = rng.choice(len(texts), 2, replace=False)
            if labels[a] != labels[b]:
                rows.append((f"{texts[a].rstrip('.?! ')}. {texts[b]}", {labels[a], labels[b]}))
        return rows

    rows = [(t, {c}) for t, c in zip(X, y)] + joined(X, y, 60)
    test_idx = np.flatnonzero(np.isin(yt, known))
    test_rows = joined([Xt[i] for i in test_idx], yt[test_idx], 100)
    Y = pd.DataFrame([[int(c in s) for c in known] for _, s in rows], columns=known)
    clf = TokenSparseClassifier(random_state=0, max_epochs=2, device="cpu").fit([t for t, _ in rows], Y)
    pred = clf.predict([t for t, _ in test_rows])
    truth = np.asarray([[int(c in s) for c in known] for _, s in test_rows])
    from sklearn.metrics import f1_score

    assert clf.label_names_ == list(known) and pred.shape == truth.shape
    assert f1_score(truth, pred, average="micro") > 0.5


@pytest.mark.slow
def test_embedded_model_follows_sample_weights_from_pandas_inputs():
    import pandas as pd

    X, y, Xt, yt, known, _ = _banking77_subset()
    X, y = pd.Series(X), pd.Series(y)
    test = [Xt[i] for i in np.flatnonzero(np.isin(yt, known))]
    params = dict(random_state=0, max_epochs=2, device="cpu")
    plain = TokenSparseClassifier(**params).fit(X, y)
    heavy = TokenSparseClassifier(**params).fit(X, y, sample_weight=np.where(y == known[0], 10.0, 1.0))
    col = list(plain.classes_).index(known[0])
    assert heavy.predict_proba(test)[:, col].mean() > plain.predict_proba(test)[:, col].mean()
    assert (heavy.predict(test) == known[0]).sum() >= (plain.predict(test) == known[0]).sum()
