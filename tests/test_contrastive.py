import numpy as np
import pytest
import torch

from cases import FAST
from sksparseft import TokenSparseClassifier
from sksparseft.model.backbone import load_backbone
from sksparseft.fit.contrastive import _batch_vectors, class_batches, supcon_loss, train_contrastive
from sksparseft.model.module import ClassifierModule
from sksparseft.strategies import get_strategy
from sksparseft.text.tokens import encode


def test_supcon_loss_is_lower_when_classes_cluster():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    clustered = torch.eye(3)[labels] + 0.01 * torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    mixed = torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2])]
    assert supcon_loss(clustered, labels, 0.1) < 0.1 < supcon_loss(mixed, labels, 0.1)


def test_supcon_loss_matches_its_definition_on_a_small_batch():
    z = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), dim=1)
    labels = torch.tensor([0, 0, 1])
    t = 0.5
    sim = z @ z.T / t
    # Anchors 0 and 1 each have one positive; anchor 2 has none and is left out.
    l0 = -(sim[0, 1] - torch.logsumexp(sim[0, [1, 2]], 0))
    l1 = -(sim[1, 0] - torch.logsumexp(sim[1, [0, 2]], 0))
    assert torch.allclose(supcon_loss(z, labels, t), (l0 + l1) / 2)


def test_weighted_supcon_loss_matches_its_definition_on_a_small_batch():
    z = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), dim=1)
    labels, w, t = torch.tensor([0, 0, 1]), torch.tensor([2.0, 1.0, 3.0]), 0.5
    s = z @ z.T / t
    # Each text counts w times among the others' positives and negatives and as an anchor.
    l0 = -(s[0, 1] - torch.log(1.0 * s[0, 1].exp() + 3.0 * s[0, 2].exp()))
    l1 = -(s[1, 0] - torch.log(2.0 * s[1, 0].exp() + 3.0 * s[1, 2].exp()))
    assert torch.allclose(supcon_loss(z, labels, t, w), (2.0 * l0 + 1.0 * l1) / 3.0)


@pytest.mark.parametrize("multilabel", [False, True])
def test_weighted_supcon_loss_is_the_unweighted_one_at_unit_weights_and_drops_zero_weights(multilabel):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(10, 6, generator=g)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 1, 2])
    if multilabel:
        labels = torch.eye(3, dtype=torch.long)[labels]
        labels[3, 0] = 1  # a text of two labels
    assert torch.allclose(supcon_loss(z, labels, 0.1, torch.ones(10)), supcon_loss(z, labels, 0.1), atol=1e-6)
    w = torch.tensor([1.0, 0.0, 2.0, 1.0, 0.0, 3.0, 1.0, 1.0, 0.5, 1.0])
    kept = w > 0
    assert torch.allclose(supcon_loss(z, labels, 0.1, w), supcon_loss(z[kept], labels[kept], 0.1, w[kept]), atol=1e-6)
    assert not torch.allclose(supcon_loss(z, labels, 0.1, w), supcon_loss(z[kept], labels[kept], 0.1), atol=1e-3)


def test_the_contrastive_stage_gets_the_training_rows_weights(tiny_model, toy_data, monkeypatch):
    import sksparseft.fit.stages as stages

    X, y = toy_data
    weights = np.arange(1, len(X) + 1, dtype=float)
    seen = {}

    def recording(*args, sample_weight=None, **kwargs):
        seen["sample_weight"] = sample_weight
        return train_contrastive(*args, sample_weight=sample_weight, **kwargs)

    monkeypatch.setattr(stages, "train_contrastive", recording)
    clf = TokenSparseClassifier(tiny_model, **dict(FAST, random_state=0, max_epochs=1, contrastive_epochs=1,
                                                   validation_fraction=0.25)).fit(X, y, sample_weight=weights)
    got = np.asarray(seen["sample_weight"])
    assert len(got) == len(X) - round(0.25 * len(X)) and set(got) < set(weights)  # the training part's own weights
    assert "contrastive" in clf.fit_stages_


def test_supcon_loss_without_positives_is_zero_and_differentiable():
    z = torch.randn(3, 4, requires_grad=True)
    loss = supcon_loss(z, torch.tensor([0, 1, 2]), 0.1)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(z.grad, torch.zeros_like(z))


def test_class_batches_visit_every_row_once_per_epoch_whatever_the_class_sizes():
    # Unbalanced: one large class, small ones, and a class with a single row (no positive).
    y = np.array([0] * 40 + [1] * 3 + [2] * 1 + [3] * 6 + [4] * 2)
    batches = class_batches(y, classes_per_batch=2, per_class=4, rng=np.random.default_rng(0))
    seen = np.concatenate(batches)
    assert 43 not in seen  # class 2's only row: no positive, never drawn
    assert sorted(seen) == sorted(np.flatnonzero(y != 2))  # every other row exactly once
    for b in batches:
        labels, counts = np.unique(y[b], return_counts=True)
        assert counts.min() >= 2  # every row of a batch has a positive
    assert class_batches(np.arange(4), 2, 2, np.random.default_rng(0)) == []


def test_class_batches_visit_each_row_once_for_any_class_sizes_and_group_size():
    rng = np.random.default_rng(0)
    for _ in range(300):
        y = rng.integers(0, rng.integers(1, 12), size=rng.integers(1, 60))
        for per_class in (2, 3, 4):
            batches = class_batches(y, 8, per_class, rng)
            seen = np.concatenate(batches) if batches else np.array([], dtype=int)
            counts = np.bincount(y)
            expected = np.flatnonzero(counts[y] >= 2)
            assert sorted(seen.tolist()) == expected.tolist()  # once each, singletons left out


def test_class_batches_of_balanced_classes_mix_classes_in_every_batch():
    # The 10-shot shape: 9 training texts per class, two groups each, spread apart over the epoch.
    y = np.repeat(np.arange(20), 9)
    batches = class_batches(y, classes_per_batch=8, per_class=4, rng=np.random.default_rng(0))
    for b in batches:
        labels, counts = np.unique(y[b], return_counts=True)
        assert len(labels) > 1 and counts.max() <= 5  # negatives, and one group (4-5 texts) per class


def test_class_batches_of_a_binary_task_cover_the_whole_epoch():
    # Two classes: drawing classes per batch would see about a quarter of the texts per epoch.
    y = np.array([0] * 100 + [1] * 28)
    batches = class_batches(y, classes_per_batch=8, per_class=4, rng=np.random.default_rng(1))
    seen = np.concatenate(batches)
    assert len(seen) == len(y) and set(seen) == set(range(len(y)))
    assert 3 <= len(batches) <= 5  # about len(y) / 32 steps, as in a cross-entropy epoch
    # Small classes are not over-visited: each class is seen in proportion to its size.
    assert np.bincount(y[seen]).tolist() == [100, 28]


def _module(tiny_model, texts, labels):
    tokenizer, encoder, _ = load_backbone(tiny_model)
    module = ClassifierModule(encoder, 3, pooling="mean")
    enc = encode(tokenizer, texts, 32)
    y = np.unique(labels, return_inverse=True)[1]
    return module, enc, y


def test_train_contrastive_hands_each_batch_its_own_rows_weights_to_the_loss(tiny_model, toy_data, monkeypatch):
    import sksparseft.fit.contrastive as contrastive

    texts, labels = toy_data
    torch.manual_seed(0)
    module, enc, y = _module(tiny_model, texts, labels)
    get_strategy("bitfit").setup(module, None)
    weights = np.asarray(y, dtype=np.float32) + 1.0  # a text's weight names its class: misaligned rows show
    seen = []

    def recording(vectors, targets, temperature, weights=None):
        seen.append((targets.clone(), weights))
        return supcon_loss(vectors, targets, temperature, weights)

    monkeypatch.setattr(contrastive, "supcon_loss", recording)
    train_contrastive(module, enc, y, epochs=1, batch_size=12, learning_rate=1e-3, weight_decay=0.0,
                      device=torch.device("cpu"), random_state=0, sample_weight=weights)
    assert seen and sum(len(t) for t, _ in seen) == len(y)
    for targets, w in seen:
        np.testing.assert_array_equal(w.numpy(), targets.numpy().astype(np.float32) + 1.0)


def test_train_contrastive_changes_only_what_the_strategy_trains_and_pulls_classes_together(tiny_model, toy_data):
    texts, labels = toy_data
    torch.manual_seed(0)
    module, enc, y = _module(tiny_model, texts, labels)
    get_strategy("bitfit").setup(module, None)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    trained = {n for n, p in module.named_parameters() if p.requires_grad and not n.startswith("head.")}

    def loss_now():
        with torch.no_grad():
            module.eval()
            b = {k: torch.as_tensor(v) for k, v in enc.items()}
            return float(supcon_loss(module.features(b["input_ids"], b["attention_mask"]), torch.as_tensor(y), 0.05))

    start = loss_now()
    losses = train_contrastive(module, enc, y, epochs=3, batch_size=12, learning_rate=1e-2, weight_decay=0.0,
                               device=torch.device("cpu"), random_state=0)
    assert len(losses) == 3
    assert loss_now() < start
    for n, p in module.named_parameters():
        changed = not torch.equal(p.detach(), before[n])
        assert changed == (n in trained), n  # the head and every frozen tensor are untouched


def test_fit_runs_the_contrastive_stage_and_is_reproducible(tiny_model, toy_data):
    texts, labels = toy_data
    params = dict(model=tiny_model, max_epochs=2, batch_size=8, device="cpu", random_state=0)
    a = TokenSparseClassifier(contrastive_epochs=2, **params).fit(texts, labels)
    b = TokenSparseClassifier(contrastive_epochs=2, **params).fit(texts, labels)
    off = TokenSparseClassifier(contrastive_epochs=0, **params).fit(texts, labels)
    assert list(a.fit_stages_) == ["load", "token_groups", "linear_probe", "selection", "contrastive", "training",
                                   "interpolation", "head_refit", "finalize"]
    assert "contrastive" not in off.fit_stages_
    np.testing.assert_array_equal(a.predict_proba(texts), b.predict_proba(texts))
    assert not np.allclose(a.predict_proba(texts), off.predict_proba(texts))


def test_max_epochs_zero_is_the_contrastive_stage_and_the_head_only(tiny_model, toy_data):
    texts, labels = toy_data
    params = dict(model=tiny_model, batch_size=8, device="cpu", random_state=0)
    only = TokenSparseClassifier(contrastive_epochs=2, max_epochs=0, **params).fit(texts, labels)
    assert list(only.fit_stages_) == ["load", "token_groups", "linear_probe", "selection", "contrastive",
                                      "interpolation", "head_refit", "finalize"]
    assert only.history_ == [] and only.finetuned_
    # The selected entries moved (the contrastive stage trained them); the probe alone differs.
    assert any(float(v.abs().max()) > 0 for _, v in only.module_.delta().values())
    probe = TokenSparseClassifier(contrastive_epochs=0, max_epochs=0, **params).fit(texts, labels)
    assert not probe.finetuned_ and all(float(v.abs().max()) == 0 for _, v in probe.module_.delta().values())
    assert not np.allclose(only.predict_proba(texts), probe.predict_proba(texts))
    np.testing.assert_allclose(only.predict_proba(texts).sum(axis=1), 1.0, atol=1e-6)


def test_contrastive_epochs_is_validated(toy_data):
    texts, labels = toy_data
    with pytest.raises(ValueError, match="contrastive_epochs"):
        TokenSparseClassifier(contrastive_epochs=-1).fit(texts, labels)


def _recorded_steps(tiny_model, toy_data, monkeypatch, **options):
    """Run train_contrastive (bitfit) recording each step's rows; (losses, rows per step, trained tensors)."""
    import sksparseft.fit.contrastive as contrastive

    texts, labels = toy_data
    torch.manual_seed(0)
    module, enc, y = _module(tiny_model, texts, labels)
    get_strategy("bitfit").setup(module, None)
    seen = []
    batch_vectors = _batch_vectors  # imported before any patch: an earlier call's recorder is not chained

    def recording(module, encodings, rows, device, features):
        seen.append(np.array(rows))  # the rows of each step, in the order the step sees them
        return batch_vectors(module, encodings, rows, device, features)

    monkeypatch.setattr(contrastive, "_batch_vectors", recording)
    losses = train_contrastive(module, enc, y, epochs=3, batch_size=12, learning_rate=1e-2, weight_decay=0.0,
                               device=torch.device("cpu"), random_state=0, **options)
    trained = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    return losses, seen, trained


def test_train_contrastive_max_steps_runs_the_first_steps_of_the_whole_stage_across_epochs(
        tiny_model, toy_data, monkeypatch):
    whole_losses, whole, _ = _recorded_steps(tiny_model, toy_data, monkeypatch)
    per_epoch = len(whole) // 3
    assert per_epoch >= 2 and len(whole) == 3 * per_epoch
    cut = per_epoch + 1  # one epoch whole, then one step of the second
    losses, seen, _ = _recorded_steps(tiny_model, toy_data, monkeypatch, max_steps=cut)
    assert len(seen) == cut and len(losses) == 2
    for a, b in zip(seen, whole[:cut]):
        np.testing.assert_array_equal(a, b)  # the same texts in each step, in the same order
    assert losses[0] == pytest.approx(whole_losses[0])


def test_train_contrastive_max_steps_at_or_above_the_stage_is_the_uncapped_stage(tiny_model, toy_data, monkeypatch):
    whole_losses, whole, whole_trained = _recorded_steps(tiny_model, toy_data, monkeypatch)
    for cap in (len(whole), len(whole) + 5):
        losses, seen, trained = _recorded_steps(tiny_model, toy_data, monkeypatch, max_steps=cap)
        assert losses == whole_losses and len(seen) == len(whole)
        for name, value in whole_trained.items():
            torch.testing.assert_close(trained[name], value, rtol=0, atol=0)


def test_contrastive_max_steps_in_fit(tiny_model, toy_data):
    texts, labels = toy_data
    params = dict(model=tiny_model, max_epochs=1, batch_size=8, device="cpu", random_state=0)
    whole = TokenSparseClassifier(**params).fit(texts, labels)
    above = TokenSparseClassifier(contrastive_max_steps=10_000, **params).fit(texts, labels)
    one = TokenSparseClassifier(contrastive_max_steps=1, **params).fit(texts, labels)
    np.testing.assert_array_equal(whole.predict_proba(texts), above.predict_proba(texts))
    assert "contrastive" in one.fit_stages_
    assert not np.allclose(whole.predict_proba(texts), one.predict_proba(texts))
    with pytest.raises(ValueError, match="contrastive_max_steps"):
        TokenSparseClassifier(contrastive_max_steps=0).fit(texts, labels)
