"""The training loop (training.py): learning-rate schedule, linear probe, the skorch net, epoch average."""

import numpy as np
import pytest
import torch

from sksparseft.fit.training import EpochAverage, WarmupLinearDecay, build_net, fit_linear_probe


def test_schedule_warms_up_then_decays_to_zero():
    f = WarmupLinearDecay(total=100, warmup=10)
    values = [f(step) for step in range(101)]
    assert values[0] == pytest.approx(1 / 11)
    assert all(a < b for a, b in zip(values[:10], values[1:11]))  # rising during warm-up
    assert values[10] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(values[10:100], values[11:101]))  # falling after it
    assert values[100] == 0.0
    assert WarmupLinearDecay(total=5, warmup=0)(0) == 1.0


def test_linear_probe_separates_separable_features():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 4
    y = np.repeat(np.arange(3), 20)
    X = centers[y] + rng.normal(size=(60, 8))
    head = torch.nn.Linear(8, 3)
    fit_linear_probe(head, X, y)
    with torch.no_grad():
        pred = (torch.as_tensor(X, dtype=torch.float32) @ head.weight.T + head.bias).argmax(1).numpy()
    assert (pred == y).mean() == 1.0


def test_linear_probe_class_weight_moves_predictions_towards_the_weighted_class():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 30)
    X = rng.normal(size=(60, 4)) + y[:, None] * 0.5  # overlapping classes
    plain, weighted = torch.nn.Linear(4, 2), torch.nn.Linear(4, 2)
    fit_linear_probe(plain, X, y)
    fit_linear_probe(weighted, X, y, class_weight=np.array([1.0, 10.0]))
    with torch.no_grad():
        t = torch.as_tensor(X, dtype=torch.float32)
        n_plain = int((plain(t).argmax(1) == 1).sum())
        n_weighted = int((weighted(t).argmax(1) == 1).sum())
    assert n_weighted > n_plain


class _Toy(torch.nn.Module):
    """A module with the interface the net expects: features() and a head."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(20, 6)
        self.head = torch.nn.Linear(6, 2)
        self.frozen = torch.nn.Linear(6, 6)
        self.frozen.weight.requires_grad_(False)
        self.frozen.bias.requires_grad_(False)

    def features(self, input_ids, attention_mask, focus=None):
        w = attention_mask.unsqueeze(-1).float()
        return self.frozen((self.embed(input_ids) * w).sum(1) / w.sum(1).clamp(min=1))

    def forward(self, input_ids, attention_mask, focus=None):
        return self.head(self.features(input_ids, attention_mask))

    def trainable_state(self):
        return {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}


def _encodings(n=24):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 20, size=(n, 5))
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}, (ids[:, 0] % 2)


def test_net_trains_only_what_requires_grad_and_scores_validation():
    torch.manual_seed(0)
    module = _Toy()
    enc, y = _encodings()
    frozen_before = module.frozen.weight.detach().clone()
    valid = ({k: v[:6] for k, v in enc.items()}, y[:6])
    net = build_net(module, n_train=18, lr=1e-2, head_lr=1e-2, weight_decay=0.0, max_epochs=3, batch_size=6,
                    device="cpu", class_weight=None, valid_data=valid, patience=0, callbacks=None, verbose=0)
    net.fit({k: v[6:] for k, v in enc.items()}, y[6:])
    assert len(net.history) == 3 and all("valid_acc" in row for row in net.history)
    assert torch.equal(module.frozen.weight, frozen_before)
    learnable = {n for n, _ in net.get_all_learnable_params()}
    assert learnable and not any("frozen" in n for n in learnable)


def test_epoch_average_is_the_mean_of_the_epochs_weights():
    module = _Toy()

    class Net:
        module_ = None

    net = Net()
    net.module_ = module
    avg = EpochAverage().initialize()
    assert avg.average() is None
    seen = []
    for step in range(3):
        with torch.no_grad():
            module.head.weight.fill_(float(step))
        avg.on_epoch_end(net)
        seen.append(module.head.weight.detach().clone())
    np.testing.assert_allclose(avg.average()["head.weight"].numpy(), torch.stack(seen).mean(0).numpy())


def test_epoch_average_sees_the_epoch_that_early_stopping_ends_on():
    torch.manual_seed(0)
    module = _Toy()
    enc, y = _encodings()
    valid = ({k: v[:6] for k, v in enc.items()}, y[:6])
    avg = EpochAverage()
    net = build_net(module, n_train=18, lr=1e-3, head_lr=1e-3, weight_decay=0.0, max_epochs=20, batch_size=6,
                    device="cpu", class_weight=None, valid_data=valid, patience=1, callbacks=None, verbose=0,
                    extra_callbacks=[("epoch_average", avg)])
    net.fit({k: v[6:] for k, v in enc.items()}, y[6:])
    assert len(net.history) < 20  # early stopping ended the fit
    assert avg.count_ == len(net.history)  # the stopping epoch is in the average too


def _best_epoch(history):
    """The last cross-entropy epoch whose ``valid_acc`` set a new best (the one early stopping restores)."""
    return max(row["epoch"] for row in history[1:] if row.get("valid_acc_best"))


def test_early_stopping_waits_patience_epochs_and_a_shorter_patience_is_the_same_fit_cut_short(tiny_model, toy_data):
    from sksparseft import TokenSparseClassifier

    X, y = toy_data
    params = dict(max_epochs=12, batch_size=8, device="cpu", validation_fraction=0.25,
                  contrastive_epochs=1, random_state=0)
    three = TokenSparseClassifier(tiny_model, patience=3, **params).fit(X, y)
    two = TokenSparseClassifier(tiny_model, patience=2, **params).fit(X, y)
    best = _best_epoch(three.history_)
    ran3, ran2 = len(three.history_) - 1, len(two.history_) - 1
    assert ran3 == best + 3 < params["max_epochs"]  # stopped after three epochs without progress
    assert ran2 == best + 2  # the same best epoch, so the shorter patience stops one epoch sooner
    # Up to its stop the shorter patience computed what the longer one did: the same scores...
    assert [row["valid_acc"] for row in two.history_] == [row["valid_acc"] for row in three.history_[: ran2 + 1]]
    # ...and it restored the same epoch, after which nothing draws random numbers: the same model.
    assert _best_epoch(two.history_) == best
    np.testing.assert_array_equal(two.predict_proba(X), three.predict_proba(X))
