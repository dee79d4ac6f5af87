"""One fit's working state (sksparseft/fit/state.py): what is checked before anything loads, the split, history_."""

import numpy as np
import pytest

from sksparseft import TokenSparseClassifier
from sksparseft.fit.state import FitState

TEXTS = ["a b", "c d", "e f", "g h", "i j", "k l"]
LABELS = ["x", "y", "x", "y", "x", "y"]


def test_start_validates_and_encodes_the_labels():
    state = FitState.start(TokenSparseClassifier(device="cpu", random_state=3), TEXTS, LABELS)
    assert state.texts == TEXTS and list(state.classes) == ["x", "y"]
    np.testing.assert_array_equal(state.y_enc, [0, 1, 0, 1, 0, 1])
    assert state.seed == 3 and state.device.type == "cpu" and state.strategy.name == "random"
    assert state.params == TokenSparseClassifier(device="cpu", random_state=3).get_params()


def test_start_fails_before_anything_loads_on_bad_settings():
    with pytest.raises(ValueError, match="strategy must be one of"):
        FitState.start(TokenSparseClassifier(strategy="nope", model="/no/such/model"), TEXTS, LABELS)
    with pytest.raises(ValueError, match="unknown_label"):
        FitState.start(TokenSparseClassifier(unknown_label="z", model="/no/such/model"), TEXTS, np.eye(6, 2, dtype=int))
    with pytest.raises(ValueError, match="validation_fraction"):
        FitState.start(TokenSparseClassifier(multilabel_threshold="auto", validation_fraction=0.0, model="/no/such"),
                       TEXTS, np.eye(6, 2, dtype=int))


def test_random_state_none_draws_a_fresh_seed_each_fit():
    seeds = {FitState.start(TokenSparseClassifier(device="cpu"), TEXTS, LABELS).seed for _ in range(5)}
    assert len(seeds) > 1


def test_set_encodings_cuts_the_training_and_held_out_parts_with_their_weights():
    state = FitState(texts=TEXTS, y=np.array(LABELS), classes=np.array(["x", "y"]), y_enc=np.array([0, 1, 0, 1, 0, 1]),
                     device="cpu", sample_weight=np.arange(6, dtype=float))
    state.train_idx, state.valid_idx = np.array([0, 1, 2, 3]), np.array([4, 5])
    enc = {"input_ids": np.arange(12).reshape(6, 2), "attention_mask": np.ones((6, 2), dtype=int)}
    state.set_encodings(enc)
    np.testing.assert_array_equal(state.train_encodings["input_ids"], enc["input_ids"][:4])
    np.testing.assert_array_equal(state.train_encodings["sample_weight"], [0, 1, 2, 3])
    valid, y_valid = state.valid_data
    np.testing.assert_array_equal(valid["sample_weight"], [4, 5])
    np.testing.assert_array_equal(y_valid, [0, 1])
    state.valid_idx = None
    state.set_encodings(enc)
    assert state.valid_data is None


def test_history_puts_the_probe_first_with_the_frozen_floor():
    state = FitState(texts=[], y=np.array([]), classes=np.array([]), y_enc=np.array([]), device="cpu")
    state.history = [{"epoch": 1, "valid_acc": 0.7}, {"epoch": 2, "valid_acc": 0.8}]
    assert state.fit_history() == state.history  # no validation split: the epochs alone
    state.selection.start_scores, state.selection.floor_scores = (0.6, 1.1), (0.5, 1.2)
    rows = state.fit_history()
    assert rows[0] == {"epoch": 0, "valid_acc": 0.6, "stage": "linear_probe", "frozen_probe_valid_acc": 0.5}
    assert rows[1:] == state.history and "frozen_probe_valid_acc" not in state.history[0]  # not edited in place


def test_timed_records_each_stage():
    state = FitState(texts=[], y=np.array([]), classes=np.array([]), y_enc=np.array([]), device="cpu")
    with state.timed("load"):
        sum(range(1000))
    with pytest.raises(KeyError), state.timed("broken"):
        raise KeyError("x")
    assert set(state.stage_times) == {"load", "broken"} and all(t >= 0 for t in state.stage_times.values())
    assert state.fit_time >= sum(state.stage_times.values())
