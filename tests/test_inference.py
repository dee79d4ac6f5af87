"""Running a module over encoded texts without gradients (model/inference.py)."""

import numpy as np
import pytest
import torch

from sksparseft.model import inference
from sksparseft.model.inference import eval_batch_size, predict_logits, progress_bar, run_inference


class _Toy(torch.nn.Module):
    """features() and a head, with dropout: an output that depends on train/eval mode.

    Records each call's batch shape and whether it ran in inference mode.
    """

    def __init__(self, n_out=2, hidden=6):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(20, hidden)
        self.dropout = torch.nn.Dropout(0.5)
        self.head = torch.nn.Linear(hidden, n_out)
        self.calls = []

    def features(self, input_ids, attention_mask, focus=None):
        self.calls.append((tuple(input_ids.shape), int(attention_mask.sum(1).max()), torch.is_inference_mode_enabled()))
        w = attention_mask.unsqueeze(-1).float()
        return self.dropout((self.embed(input_ids) * w).sum(1) / w.sum(1).clamp(min=1))

    def forward(self, input_ids, attention_mask, focus=None):
        return self.head(self.features(input_ids, attention_mask))


def _encodings(n=10, width=5):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 20, size=(n, width))
    mask = np.ones_like(ids)
    mask[::2, 3:] = 0  # different lengths: batches are length-sorted inside
    mask[1::4, 1:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _expected(module, enc, what="logits"):
    module.calls = []
    was = module.training
    module.eval()
    with torch.no_grad():
        ids, mask = torch.as_tensor(enc["input_ids"]), torch.as_tensor(enc["attention_mask"])
        out = module.features(ids, mask) if what == "features" else module(ids, mask)
    module.train(was)
    module.calls = []
    return out.numpy()


def test_run_inference_keeps_input_order_and_training_mode():
    module = _Toy().train()
    enc = _encodings(10)
    out = run_inference(module, enc, 3, "cpu")
    np.testing.assert_allclose(out, _expected(module, enc), rtol=1e-5, atol=1e-6)  # eval: no dropout
    assert module.training
    module.eval()
    run_inference(module, enc, 3, "cpu", what="features")
    assert not module.training


def test_logits_and_features_shapes_and_values():
    module = _Toy(n_out=3, hidden=6)
    enc = _encodings(7)
    logits = run_inference(module, enc, 4, "cpu")
    features = run_inference(module, enc, 4, "cpu", what="features")
    assert logits.shape == (7, 3) and features.shape == (7, 6)
    assert logits.dtype == features.dtype == np.float32
    np.testing.assert_allclose(features, _expected(module, enc, "features"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, features @ module.head.weight.detach().numpy().T + module.head.bias.detach().numpy(),
                               rtol=1e-5, atol=1e-5)


def test_batches_are_at_most_batch_size_trimmed_and_run_in_inference_mode():
    module = _Toy()
    enc = _encodings(10)
    run_inference(module, enc, 3, "cpu")
    assert [shape[0] for shape, _, _ in module.calls] == [3, 3, 3, 1]
    assert all(shape[1] == longest for shape, longest, _ in module.calls)  # padding cut to the batch's longest
    assert all(inference_mode for _, _, inference_mode in module.calls)


@pytest.mark.parametrize("what, width", [("logits", 2), ("features", 6)])
def test_empty_input_gives_an_empty_array_of_the_right_width(what, width):
    module = _Toy(n_out=2, hidden=6)
    enc = {"input_ids": np.zeros((0, 5), dtype=np.int64), "attention_mask": np.zeros((0, 5), dtype=np.int64)}
    out = run_inference(module, enc, 4, "cpu", what=what)
    assert out.shape == (0, width) and out.dtype == np.float32
    assert not module.calls


def test_progress_wraps_the_batches():
    module = _Toy()
    enc = _encodings(10)
    seen = []

    def progress(batches):
        seen.append(len(batches))
        for b in batches:
            seen.append(sorted(b.tolist()))
            yield b

    out = run_inference(module, enc, 4, "cpu", progress=progress)
    assert seen[0] == 3 and sorted(i for rows in seen[1:] for i in rows) == list(range(10))
    np.testing.assert_allclose(out, _expected(module, enc), rtol=1e-5, atol=1e-6)


def test_training_mode_comes_back_when_the_module_fails():
    module = _Toy().train()

    def broken(*args):
        raise RuntimeError("boom")

    module.features = broken
    with pytest.raises(RuntimeError, match="boom"):
        run_inference(module, _encodings(4), 2, "cpu", what="features")
    assert module.training


@pytest.mark.parametrize("batch_size, expected", [(1, 64), (8, 64), (64, 64), (65, 65), (512, 512)])
def test_eval_batch_size_is_at_least_64(batch_size, expected):
    assert eval_batch_size(batch_size) == expected


def test_progress_bar_only_when_verbose():
    assert progress_bar(False, "predict") is None
    assert progress_bar(0, "predict") is None
    bar = progress_bar(True, "predict")
    assert list(bar(range(3))) == [0, 1, 2]


def test_predict_logits_in_chunks_equals_one_pass(tiny_model, monkeypatch):
    from cases import tiny_module
    from sksparseft.text.tokens import encode

    tok, module = tiny_module(tiny_model)
    texts = ["my card is late", "refund please", "pin", "where is my new card today", "change pin"]
    whole = run_inference(module, encode(tok, texts, 16), 64, "cpu")
    monkeypatch.setattr(inference, "PREDICT_CHUNK", 2)
    seen = []

    def progress(items):
        seen.append(list(items))
        return seen[-1]

    out = predict_logits(module, tok, texts, max_length=16, batch_size=8, device="cpu", n_outputs=3, progress=progress)
    assert out.shape == (5, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, whole, rtol=1e-4, atol=1e-5)
    assert seen == [[0, 2, 4]]  # a long input's progress counts chunks
    seen.clear()
    predict_logits(module, tok, texts[:2], max_length=16, batch_size=8, device="cpu", n_outputs=3, progress=progress)
    assert len(seen) == 1 and len(seen[0]) == 1  # one chunk: its batches
