import numpy as np
import pytest
import torch

from cases import FAST
from sksparseft import TokenSparseClassifier
from sksparseft.model.backbone import load_backbone
from sksparseft.fit.interpolation import load_interpolated_, select_interpolation, validation_scorer, validation_scores
from sksparseft.model.mask import SparseMask
from sksparseft.model.module import ClassifierModule
from sksparseft.model.sparse_delta import param_key as _key
from sksparseft.text.tokens import encode

TEXTS = ["my card is late", "refund please", "pin", "where is my card", "refund my money", "reset my pin"]
LABELS = np.array([0, 1, 2, 0, 1, 2])


def _start_and_end(tiny_model):
    """A module with a sparse delta, and two trainable states: zero delta (start) and a moved one (end)."""
    tok, enc = load_backbone(tiny_model)[:2]
    m = ClassifierModule(enc, 3, pooling="mean", dropout=0.0)
    name = "encoder.layer.1.intermediate.dense.weight"
    m.set_mask(SparseMask({name: torch.arange(0, 2048, 7)}, {name: (64, 32)}))
    m.eval()
    start = m.trainable_state()
    torch.manual_seed(0)
    end = {n: v + torch.randn_like(v) for n, v in start.items()}
    return tok, m, start, end


def test_interpolated_state_is_the_straight_line(tiny_model):
    _, m, start, end = _start_and_end(tiny_model)
    for a in (0.0, 0.3, 1.0):
        load_interpolated_(m, start, end, a)
        for n, v in m.trainable_state().items():
            torch.testing.assert_close(v, (1 - a) * start[n] + a * end[n])
    load_interpolated_(m, start, end, 0.0)
    assert all(torch.equal(v, start[n]) for n, v in m.trainable_state().items())


def test_selection_searches_coarse_then_refines_and_loads_the_winner(tiny_model):
    _, m, start, end = _start_and_end(tiny_model)
    # Accuracy as a known function of where the module sits (read from the head's bias).
    b0, b1 = start["head.bias"], end["head.bias"]

    def fake_scores(module):
        a = float(((module.head.bias.detach() - b0) @ (b1 - b0)) / ((b1 - b0) @ (b1 - b0)))
        return round(1.0 - abs(a - 0.625), 6), 0.5

    a, scores = select_interpolation(m, start, end, fake_scores)
    assert a == 0.625
    assert sorted(scores) == [0.0, 0.25, 0.5, 0.625, 0.75, 0.875, 1.0]
    torch.testing.assert_close(m.head.bias, torch.lerp(b0, b1, 0.625))


def test_selection_breaks_ties_by_log_loss_then_by_the_larger_weight(tiny_model):
    _, m, start, end = _start_and_end(tiny_model)
    a, _ = select_interpolation(m, start, end, lambda module: (0.9, 0.3), known={0.0: (0.9, 0.1)})
    assert a == 0.0  # same accuracy, lower log-loss
    a, _ = select_interpolation(m, start, end, lambda module: (0.9, 0.3))
    assert a == 1.0  # a full tie keeps the finetune as trained


def test_reported_scores_are_those_of_the_loaded_weights(tiny_model):
    tok, m, start, end = _start_and_end(tiny_model)
    data = (encode(tok, TEXTS, 16), LABELS)
    a, scores = select_interpolation(m, start, end, validation_scorer(data, 4, torch.device("cpu")))
    assert scores[a] == validation_scores(m, data, 4, torch.device("cpu"))
    assert scores[a][0] == max(s[0] for s in scores.values())


@pytest.mark.parametrize("interpolate", [True, False])
def test_estimator_records_where_it_sits(tiny_model, toy_data, interpolate):
    X, y = toy_data
    clf = TokenSparseClassifier(
        tiny_model, max_epochs=2, batch_size=8, random_state=0, interpolate_weights=interpolate,
        validation_fraction=0.25,
    ).fit(X, y)
    assert clf.finetuned_ == (clf.interpolation_ > 0)
    if interpolate:
        assert {0.0, 0.25, 0.5, 0.75, 1.0} <= set(clf.interpolation_scores_)
        assert clf.interpolation_ in clf.interpolation_scores_
        chosen = clf.interpolation_scores_[clf.interpolation_][0]
        assert chosen == max(s[0] for s in clf.interpolation_scores_.values())
        # Row 0 of the history is the probe: the same point as a = 0.
        assert clf.history_[0]["valid_acc"] == clf.interpolation_scores_[0.0][0]
    else:
        assert clf.interpolation_ in (0.0, 1.0) and clf.interpolation_scores_ == {}


def test_without_validation_the_finetune_is_kept(tiny_model, toy_data):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_model, max_epochs=1, batch_size=8, random_state=0, validation_fraction=0).fit(X, y)
    assert clf.interpolation_ == 1.0 and clf.finetuned_ and clf.interpolation_scores_ == {}


def test_save_and_load_keep_the_interpolation(tiny_model, toy_data, tmp_path):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_model, max_epochs=1, batch_size=8, random_state=0, validation_fraction=0.25).fit(X, y)
    loaded = TokenSparseClassifier.load(clf.save(tmp_path / "m.safetensors"))
    assert loaded.interpolation_ == clf.interpolation_
    assert loaded.interpolation_scores_ == clf.interpolation_scores_
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize("validation_fraction", [0.25, 0])
def test_head_refit_is_the_probe_regression_on_every_text(tiny_model, toy_data, validation_fraction):
    from sksparseft.fit.training import fit_linear_probe
    from sksparseft.model.inference import run_inference

    X, y = toy_data
    clf = TokenSparseClassifier(
        tiny_model, max_epochs=1, batch_size=8, random_state=0, validation_fraction=validation_fraction,
    ).fit(X, y)
    assert "head_refit" in clf.fit_stages_
    # Refit by hand on the fitted encoder's features of all texts, held-out ones included.
    feats = run_inference(clf.module_, encode(clf.tokenizer_, list(X), clf.max_length), 64, clf.device_, what="features")
    head = torch.nn.Linear(clf.module_.head.in_features, len(clf.classes_))
    fit_linear_probe(head, feats, np.searchsorted(clf.classes_, y))
    torch.testing.assert_close(clf.module_.head.weight, head.weight, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(clf.module_.head.bias, head.bias, atol=1e-4, rtol=1e-4)


def test_without_head_refit_only_the_head_differs(tiny_model, toy_data):
    X, y = toy_data
    kw = dict(max_epochs=1, batch_size=8, random_state=0, validation_fraction=0.25)
    kept = TokenSparseClassifier(tiny_model, refit_head=False, **kw).fit(X, y)
    refit = TokenSparseClassifier(tiny_model, **kw).fit(X, y)
    assert "head_refit" not in kept.fit_stages_
    # Same training and choice; only the head differs.
    assert kept.interpolation_ == refit.interpolation_ and kept.interpolation_scores_ == refit.interpolation_scores_
    for (n, p), q in zip(kept.module_.encoder.named_parameters(), refit.module_.encoder.parameters()):
        assert torch.equal(p, q), n
    assert not torch.equal(kept.module_.head.weight, refit.module_.head.weight)


def test_refit_head_must_be_a_bool(tiny_model, toy_data):
    with pytest.raises(ValueError, match="refit_head"):
        TokenSparseClassifier(tiny_model, refit_head="yes").fit(*toy_data)


def test_model_files_from_before_the_refit_load_as_fitted_without_it():
    from sksparseft.io.persistence import params_from_json as _params_from_json

    old = _params_from_json({"density": 0.01})
    assert old["refit_head"] is False and old["average_epochs"] is False
    assert _params_from_json({"refit_head": True})["refit_head"] is True


def test_average_epochs_ends_at_the_mean_of_the_epochs_weights(tiny_model, toy_data):
    from skorch.callbacks import Callback

    snaps = []

    class Snap(Callback):  # user callbacks run after the averaging one, on the same weights
        def on_epoch_end(self, net, **kw):
            snaps.append(net.module_.trainable_state())

    X, y = toy_data
    clf = TokenSparseClassifier(
        tiny_model, max_epochs=3, batch_size=8, random_state=0, validation_fraction=0, average_epochs=True,
        refit_head=False, callbacks=[Snap()],
    ).fit(X, y)
    assert len(snaps) == 3 and clf.interpolation_ == 1.0
    mean = {n: torch.stack([s[n] for s in snaps]).mean(0) for n in snaps[0]}
    torch.testing.assert_close(clf.module_.head.weight, mean["head.weight"])
    deltas = clf.module_.delta()
    assert deltas
    for name, (_, values) in deltas.items():
        torch.testing.assert_close(values, mean[f"delta_values.{_key(name)}"])


def _scramble(module):
    """Training made useless: every trained backbone tensor pushed far from anything learned."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.requires_grad and not name.startswith("head."):
                p.add_(torch.randn_like(p) * 50)


class _UselessContrastive(TokenSparseClassifier):
    def stage_contrastive(self, state):
        super().stage_contrastive(state)
        _scramble(state.module)


class _UselessTraining(_UselessContrastive):
    def stage_training(self, state):
        super().stage_training(state)
        _scramble(state.module)


def _frozen_probe(tiny_model, X, y, **params):
    """The frozen backbone with the linear probe, refit on every text: what a useless fit must fall back to."""
    return TokenSparseClassifier(tiny_model, random_state=0, **{**params, "max_epochs": 0, "contrastive_epochs": 0}).fit(X, y)


@pytest.mark.parametrize("cls, params", [(_UselessTraining, dict(FAST, contrastive_epochs=1)),
                                         (_UselessContrastive, dict(FAST, contrastive_epochs=1, max_epochs=0))],
                         ids=["default_stages", "contrastive_only"])
def test_a_fit_whose_training_is_useless_falls_back_to_the_frozen_probe(tiny_model, toy_data, cls, params):
    X, y = toy_data
    clf = cls(tiny_model, random_state=0, **params).fit(X, y)
    probe = _frozen_probe(tiny_model, X, y, **params)
    assert clf.finetuned_ is False and clf.interpolation_ == 0.0
    np.testing.assert_allclose(clf.predict_proba(X), probe.predict_proba(X), rtol=0, atol=1e-6)


def test_history_records_the_frozen_probe_score_that_the_choice_is_held_to(tiny_model, toy_data):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_model, random_state=0, **dict(FAST, contrastive_epochs=1)).fit(X, y)
    first = clf.history_[0]
    assert first["stage"] == "linear_probe" and "frozen_probe_valid_acc" in first
    kept = clf.interpolation_scores_[clf.interpolation_][0]
    assert clf.finetuned_ is True and kept >= first["frozen_probe_valid_acc"]  # this fit trains (tests/test_selection.py)


class _NonFinite(TokenSparseClassifier):
    def stage_training(self, state):
        with torch.no_grad():
            next(p for n, p in state.module.named_parameters()
                 if p.requires_grad and not n.startswith("head.")).fill_(float("nan"))
        super().stage_training(state)


@pytest.mark.parametrize("validation_fraction", [0.2, 0.0])
def test_a_fit_whose_loss_turns_non_finite_says_so_and_falls_back(tiny_model, toy_data, validation_fraction):
    X, y = toy_data
    params = dict(FAST, contrastive_epochs=0, validation_fraction=validation_fraction)
    with pytest.warns(UserWarning, match="non-finite"):
        clf = _NonFinite(tiny_model, random_state=0, **params).fit(X, y)
    assert clf.finetuned_ is False
    proba = clf.predict_proba(X)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba, _frozen_probe(tiny_model, X, y, **params).predict_proba(X), rtol=0, atol=1e-6)
