"""accelerate=True: data-parallel training through Hugging Face Accelerate (here: 2 CPU processes)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sksparseft import TokenSparseClassifier

pytestmark = pytest.mark.skipif(importlib.util.find_spec("accelerate") is None, reason="needs accelerate")


def test_single_process_accelerate_fits_like_a_plain_fit(tiny_model, toy_data):
    X, y = toy_data
    common = dict(max_epochs=2, batch_size=8, device="cpu", random_state=0,
                  validation_fraction=0.0, learning_rate=1e-2)
    plain = TokenSparseClassifier(tiny_model, **common).fit(X, y)
    acc = TokenSparseClassifier(tiny_model, accelerate=True, **common).fit(X, y)
    assert acc.mask_.n_selected == plain.mask_.n_selected
    np.testing.assert_allclose(acc.predict_proba(X), plain.predict_proba(X), atol=1e-4)


def _torchrun(mode, model, out, port):
    script = Path(__file__).with_name("ddp_fit.py")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
         str(script), mode, model, str(out)],
        env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, [json.loads(Path(f"{out}.{r}").read_text()) for r in (0, 1)]


def test_two_processes_train_one_model_through_every_stage(tiny_model, tmp_path):
    _, (r0, r1) = _torchrun("fit", tiny_model, tmp_path / "result", 29531)
    assert r0["world"] == r1["world"] == 2
    losses = r0["contrastive_losses"]
    assert losses is not None and len(losses) == 2 and np.isfinite(losses).all()  # the contrastive stage ran
    assert r1["contrastive_losses"] == losses  # one loss for both: each compared the whole batch
    # Every epoch, both processes took their share of one batch sequence (before 0.7.1 they drew their
    # own orders after dropout had drawn differently, cut different counts of batches and hung).
    assert r0["batches"] == r1["batches"] and len(r0["batches"]) == 6
    # and scored every validation text (one early-stopping decision for both, not one per process's share)
    assert r0["valid_acc"] == r1["valid_acc"] and len(r0["valid_acc"]) == 6
    assert r0["selected"] == r1["selected"] > 0
    assert r0["delta"] == r1["delta"]  # gradients averaged: both processes hold the same weights
    assert r0["interpolation"] == r1["interpolation"] > 0  # one point chosen for both, not the probe
    assert any(abs(v) > 0 for vals in r0["delta"].values() for v in vals)  # and training moved them
    np.testing.assert_allclose(r0["proba"], r1["proba"], atol=1e-6)


def test_two_process_contrastive_epoch_takes_the_single_process_steps(tiny_model, tmp_path):
    from tests.ddp_fit import contrastive_weights

    _, (r0, r1) = _torchrun("contrastive", tiny_model, tmp_path / "result", 29532)
    single = contrastive_weights(tiny_model, distributed=False)
    assert r0["world"] == 2
    assert r0["weights"] == r1["weights"]  # identical steps in both processes
    np.testing.assert_allclose(r0["losses"], single["losses"], rtol=1e-5)
    moved = False
    for name, values in single["weights"].items():
        np.testing.assert_allclose(r0["weights"][name], values, atol=1e-5, err_msg=name)
    for name, values in single["weights"].items():
        moved = moved or not np.allclose(values, _pretrained(tiny_model, name), atol=1e-6)
    assert moved  # the epoch changed the weights it compares


def _pretrained(model, name):
    from sksparseft.model.backbone import load_backbone

    _, encoder, _ = load_backbone(model)
    return dict(encoder.named_parameters())[name].detach().flatten().tolist()


def test_accelerate_must_be_a_bool(tiny_model, toy_data):
    X, y = toy_data
    with pytest.raises(ValueError, match="accelerate"):
        TokenSparseClassifier(tiny_model, accelerate="yes").fit(X, y)
