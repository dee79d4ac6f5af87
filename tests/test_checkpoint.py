import os

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from cases import FAST as BASE
from cases import EpochLog
from sksparseft import TokenSparseClassifier
from sksparseft.fit.checkpoint import atomic_torch_save, load_checkpoint
from sksparseft.model.module import ClassifierModule


FAST = dict(BASE, max_epochs=4, random_state=0, patience=0, learning_rate=3e-3)
DEFAULT_PATIENCE = TokenSparseClassifier().patience


class ScoresPeakAfterTheInterrupt(Callback):
    """Sets each epoch's ``valid_acc`` (what early stopping watches) to 0.5, 0.4, 0.6, 0.55: the best epoch is
    the third, after the interruption and the checkpoint, with misses on either side of it.

    On the toy data every epoch scores 1.0 on validation and ties the first, which early stopping then
    keeps: an interrupted fit with patience would end with the uninterrupted one's weights (the first
    epoch's, restored from the checkpoint), and a resume that trained from the wrong weights would still
    predict the reference. It runs before early stopping (user callbacks do).
    """

    SCORES = (0.5, 0.4, 0.6, 0.55)

    def on_epoch_end(self, net, **kwargs):
        net.history.record("valid_acc", self.SCORES[net.history[-1, "epoch"] - 1])


@pytest.mark.parametrize("patience,average", [(0, False), (DEFAULT_PATIENCE, False), (3, False),
                                              (0, True), (DEFAULT_PATIENCE, True)])
def test_interrupted_fit_resumes_to_the_uninterrupted_result(tiny_model, toy_data, tmp_path, monkeypatch, patience,
                                                             average):
    """Interrupted (KeyboardInterrupt in epoch 2) and resumed, the fit predicts what the uninterrupted
    one does, bit for bit; the interrupted model differs from both, with early stopping too.

    Mutation check: ``restore`` not loading the checkpoint's trainable tensors (the resumed epochs go on
    from the start weights) -> fails, with the default patience too (on the real scores, patience 3 without
    averaging passed: early stopping restored epoch 1, the interrupted model equal to the reference).
    """
    X, y = toy_data
    params = {**FAST, "patience": patience, "average_epochs": average}
    scores = ScoresPeakAfterTheInterrupt()
    reference = TokenSparseClassifier(tiny_model, callbacks=[scores], **params).fit(X, y)
    # All four epochs ran (no early stop), scored as set.
    assert [(r["epoch"], r["valid_acc"]) for r in reference.history_[1:]] == list(enumerate(scores.SCORES, 1))
    path = str(tmp_path / "ckpt.pt")

    calls = {"n": 0}
    original = ClassifierModule.forward

    def interrupt_in_epoch_two(self, *args, **kwargs):
        if self.training:
            calls["n"] += 1
            if calls["n"] == 12:  # 6 train batches per epoch: the last batch of epoch 2
                raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ClassifierModule, "forward", interrupt_in_epoch_two)
    with pytest.warns(UserWarning, match="interrupted"):
        broken = TokenSparseClassifier(tiny_model, checkpoint_path=path, callbacks=[scores], **params).fit(X, y)
    assert broken.interrupted_ and os.path.isfile(path)
    monkeypatch.setattr(ClassifierModule, "forward", original)

    saved = torch.load(path, weights_only=True)["epoch"]  # epochs the checkpoint holds
    assert 1 <= saved < 3  # before the best epoch
    log = EpochLog()
    resumed = TokenSparseClassifier(tiny_model, checkpoint_path=path, callbacks=[scores, log], **params).fit(X, y)
    assert not resumed.interrupted_
    # It went on from the checkpoint: only the epochs the checkpoint had not done ran, numbered on from it.
    assert log.epochs == [r["epoch"] for r in reference.history_[1:]][saved:]
    assert [r["epoch"] for r in resumed.history_[1:]] == [r["epoch"] for r in reference.history_[1:]]
    assert [r["epoch"] for r in resumed.history_[1:]][:3] == [1, 2, 3]
    np.testing.assert_array_equal(resumed.predict_proba(X), reference.predict_proba(X))
    # The interruption changed the answer (so the equality above is the resume's doing), whatever the patience.
    assert not np.array_equal(broken.predict_proba(X), reference.predict_proba(X))


def test_checkpoint_of_another_fit_is_not_used(tiny_model, toy_data, tmp_path):
    X, y = toy_data
    path = str(tmp_path / "ckpt.pt")
    TokenSparseClassifier(tiny_model, checkpoint_path=path, **{**FAST, "max_epochs": 1}).fit(X, y)
    log = EpochLog()
    other = TokenSparseClassifier(tiny_model, checkpoint_path=path, callbacks=[log], **{**FAST, "max_epochs": 2}).fit(X, y)
    assert log.epochs == [1, 2]  # started afresh: a resumed fit would have run epoch 2 only
    assert [r["epoch"] for r in other.history_[1:]] == [1, 2]
    fresh = TokenSparseClassifier(tiny_model, **{**FAST, "max_epochs": 2}).fit(X, y)
    np.testing.assert_array_equal(other.predict_proba(X), fresh.predict_proba(X))  # one process: bit for bit
    assert torch.load(path, weights_only=True)["epoch"] == 2  # and the checkpoint is now this fit's


def test_corrupt_checkpoint_is_a_clear_error(tiny_model, toy_data, tmp_path):
    X, y = toy_data
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable sksparseft checkpoint"):
        TokenSparseClassifier(tiny_model, checkpoint_path=str(path), **FAST).fit(X, y)
    atomic_torch_save({"format": 99}, str(path))
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        load_checkpoint(str(path), "x")


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    path = str(tmp_path / "f.pt")
    atomic_torch_save({"a": torch.ones(2)}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("crash mid-save")

    with pytest.raises(RuntimeError):
        atomic_torch_save({"a": Boom()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert os.listdir(tmp_path) == ["f.pt"]


def test_the_fingerprint_changes_with_anything_that_shapes_the_fit():
    from sksparseft.fit.checkpoint import fingerprint
    from sksparseft.fit.state import FitState
    from sksparseft.model.mask import SparseMask

    texts, labels = ["a b", "c d", "e f", "g h"], ["x", "y", "x", "y"]

    def state(**changes):
        est = TokenSparseClassifier(**{"device": "cpu", "random_state": 0, **changes.pop("params", {})})
        s = FitState.start(est, changes.pop("texts", texts), changes.pop("labels", labels), changes.pop("weights", None))
        s.mask = changes.pop("mask", None)
        return s

    base = fingerprint(state())
    assert base == fingerprint(state())  # the same fit
    assert base == fingerprint(state(params={"verbose": 1, "device": "auto"}))  # does not shape training
    mask = SparseMask({"w": torch.tensor([1, 2])}, {"w": (4,)})
    others = [state(params={"learning_rate": 1e-4}), state(texts=["a b", "c d", "e f", "g i"]),
              state(labels=["x", "y", "y", "x"]), state(weights=np.array([1.0, 2.0, 1.0, 1.0])), state(mask=mask)]
    assert len({base, *map(fingerprint, others)}) == 1 + len(others)


def test_checkpointed_fit_that_stops_early_and_averages_epochs_is_the_plain_fit(tiny_model, toy_data, tmp_path):
    X, y = toy_data
    params = dict(max_epochs=12, batch_size=8, device="cpu", validation_fraction=0.25,
                  contrastive_epochs=1, random_state=0, patience=1, average_epochs=True)
    plain = TokenSparseClassifier(tiny_model, **params).fit(X, y)
    assert len(plain.history_) - 1 < params["max_epochs"]  # early stopping ended it
    path = str(tmp_path / "ckpt.pt")
    saved = TokenSparseClassifier(tiny_model, checkpoint_path=path, **params).fit(X, y)
    assert [r["epoch"] for r in saved.history_] == [r["epoch"] for r in plain.history_]
    np.testing.assert_array_equal(saved.predict_proba(X), plain.predict_proba(X))  # one process: bit for bit
