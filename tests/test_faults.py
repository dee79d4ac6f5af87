"""The fault guarantees, each proved the way it can break: threads, real processes, real signals, a full disk.

- one fitted (or loaded) estimator serves 8 threads with the sequential answers;
- predicting a long generator keeps peak memory flat, and equals batch-by-batch calls;
- ``kill -9`` in the middle of a checkpointed fit, then ``fit`` again: it resumes (runs only the epochs
  after the checkpoint's, at least one) and gives the uninterrupted answer, a finetune and not the
  linear probe, with and without the contrastive stage;
- a full disk (a small tmpfs, mounted as root or in a user namespace) during save, a checkpoint write
  and each export: the old file intact, no temporary left, an error that names the path and says the
  disk is full;
- two processes saving to one path at once: one complete, loadable model.
"""

import errno
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from cases import FAST as BASE

import sksparseft
from sksparseft import TokenSparseClassifier
from sksparseft.atomic import atomic_dir, atomic_write

CHILD = str(Path(__file__).with_name("fault_children.py"))
FAST = dict(BASE, random_state=0, validation_fraction=0.0, learning_rate=1e-2)
# The children import the sksparseft this process imported (a checkout's, not whichever one is installed):
# fault_children.py runs as a script, so its own folder, not the checkout, heads its sys.path.
CHILD_ENV = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONPATH=os.pathsep.join(
    [str(Path(sksparseft.__file__).resolve().parents[1])] + [p for p in [os.environ.get("PYTHONPATH")] if p]))


def _child(*args, **kwargs):
    return subprocess.run([sys.executable, CHILD, *map(str, args)], capture_output=True, text=True, env=CHILD_ENV,
                          check=False, **kwargs)


@pytest.fixture(scope="module")
def model_file(tiny_model, toy_data, tmp_path_factory):
    X, y = toy_data
    clf = TokenSparseClassifier(tiny_model, **FAST).fit(X, y)
    return clf, clf.save(tmp_path_factory.mktemp("faults") / "model.safetensors")


# -- threads ----------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["fitted", "loaded"])
def test_eight_threads_get_the_sequential_answers(model_file, toy_data, source):
    fitted, path = model_file
    clf = fitted if source == "fitted" else TokenSparseClassifier.load(path)
    X, _ = toy_data
    # Inputs of different sizes and lengths, so that concurrent batches differ in shape.
    inputs = [X[i:i + 1 + i % 7] + ["a much longer text about a card that has not arrived " * (i % 3)] for i in range(24)]
    calls = [("predict_proba", x) for x in inputs] + [("predict", x) for x in inputs] + [("explain", x[:2]) for x in inputs]
    sequential = [getattr(clf, name)(x) for name, x in calls]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            threaded = list(pool.map(lambda call: getattr(clf, call[0])(call[1]), calls))
            for (name, _), a, b in zip(calls, sequential, threaded):
                if name == "explain":
                    assert a == b
                else:
                    np.testing.assert_array_equal(a, b)


# -- memory -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_long_generator_keeps_peak_memory_flat(model_file):
    _, path = model_file
    runs = {}
    for n in (5_000, 100_000):
        res = _child("memory", path, n)
        assert res.returncode == 0, res.stderr[-2000:]
        runs[n] = json.loads(res.stdout.strip().splitlines()[-1])
        assert runs[n]["rows"] == n
        assert runs[n]["max_gap"] < 1e-5  # the same probabilities as batch-by-batch calls
    # Twenty times the texts: the texts themselves (a few MB), their probabilities and allocator
    # slack (about 33 MB on the development machine), no more. Tokenising the whole input at once
    # padded to its longest text peaked 1.9 GB higher there.
    grown_mib = (runs[100_000]["peak_kib"] - runs[5_000]["peak_kib"]) / 1024
    assert grown_mib < 128, runs


# -- kill -9 during a checkpointed fit --------------------------------------------------------
def _report(res):
    """The JSON line a ``fault_children.py fit`` process printed last."""
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def probe_proba(tiny_model):
    """Probabilities of the fault fit with nothing trained (max_epochs=0, contrastive_epochs=0): the linear probe."""
    from fault_children import FIT, LABELS, TEXTS

    clf = TokenSparseClassifier(tiny_model, **{**FIT, "max_epochs": 0, "contrastive_epochs": 0}).fit(TEXTS, LABELS)
    assert not clf.finetuned_
    return clf.predict_proba(TEXTS)


@pytest.mark.parametrize("seed,contrastive_epochs", [(0, 0), (1, 2)], ids=["cross_entropy_only", "default_stages"])
def test_a_killed_checkpointed_fit_resumes_to_the_uninterrupted_answer(tiny_model, probe_proba, tmp_path, seed,
                                                                       contrastive_epochs):
    """The resumed fit trains (not the probe fallback), runs only and at least one of the epochs after the
    checkpoint, and predicts bit for bit what the uninterrupted fit predicts.

    Mutation check: a resume that reruns every epoch from scratch (``fit_or_resume`` ignoring the
    checkpoint) -> fails (epochs 1..40 ran). Mutation check: a resume that runs no epoch (``remaining = 0``)
    -> fails (no epoch ran). Mutation check: every fit falls back to the probe (``fall_back = True`` in
    ``ModelSelection.keep_floor_if_better``) -> fails (``finetuned_`` false), where equality alone passed.
    """
    # contrastive_epochs=2 is the default fit: the contrastive stage runs again before the resumed epochs.
    reference = _child("fit", tiny_model, "-", tmp_path / "reference.npy", contrastive_epochs)
    assert reference.returncode == 0, reference.stderr[-2000:]
    ran = _report(reference)
    assert Path(ran["package"]).resolve() == Path(sksparseft.__file__).resolve()  # the code under test, no other copy
    n_epochs = 40  # fault_children.FIT: max_epochs=40, patience=0 (no early stop)
    assert ran["epochs"] == list(range(1, n_epochs + 1))
    assert ("contrastive" in ran["stages"]) == bool(contrastive_epochs)
    # It trained: equal probabilities would prove nothing if both fits fell back to the frozen probe.
    assert ran["finetuned"] and ran["interpolation"] > 0.0, ran
    trained_gap = np.abs(np.load(tmp_path / "reference.npy") - probe_proba).max()
    assert trained_gap > 1e-2, f"the finetune predicts what the linear probe predicts (gap {trained_gap:.2g})"
    checkpoint = tmp_path / "fit.ckpt"
    proc = subprocess.Popen([sys.executable, CHILD, "fit", tiny_model, str(checkpoint), str(tmp_path / "killed.npy"),
                             str(contrastive_epochs)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=CHILD_ENV)
    while proc.poll() is None and not checkpoint.exists():
        time.sleep(0.01)
    # A random moment after the first epoch's checkpoint, in an epoch or in a checkpoint write: within
    # about 20 of the reference's epochs, so that on a machine of any speed epochs remain to be resumed.
    epoch_s = float(np.median(ran["durations"]))
    time.sleep(np.random.default_rng(seed).uniform(0.0, 20 * epoch_s))
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the fit ended before it could be killed"
    assert not (tmp_path / "killed.npy").exists()
    saved = torch.load(checkpoint, weights_only=True)["epoch"]  # the epochs the killed fit finished
    assert 1 <= saved < n_epochs, f"killed after {saved} epochs: none left to resume"
    resumed = _child("fit", tiny_model, checkpoint, tmp_path / "resumed.npy", contrastive_epochs)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    again = _report(resumed)
    # It resumed, not restarted: only the epochs after the checkpoint's ran, numbered on from it, and at least one.
    assert again["epochs"], "the resumed fit ran no epoch"
    assert again["epochs"] == list(range(saved + 1, n_epochs + 1))
    assert again["finetuned"], again
    # Processes on one machine, same library builds: bit for bit.
    np.testing.assert_array_equal(np.load(tmp_path / "resumed.npy"), np.load(tmp_path / "reference.npy"))


# -- a full disk --------------------------------------------------------------------------------
def _tried(args):
    """``None`` if the command ``args`` succeeds, else why not (one line)."""
    try:
        res = subprocess.run(args, capture_output=True, text=True, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if res.returncode == 0 else (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]


@functools.cache
def _tmpfs_route():
    """``(route, why_not)``: how this machine gives a test a small disk of its own.

    ``"mount"``: mount a tmpfs directly (root, or CAP_SYS_ADMIN, where mounting is permitted);
    else ``"unshare"``: a tmpfs in a user namespace (``unshare -rm``); else ``None`` and what each lacked.
    """
    why = []
    if not shutil.which("mount") or not shutil.which("umount"):
        why.append("no mount/umount command")
    elif os.geteuid() != 0:
        why.append("mount -t tmpfs: not root")
    else:
        with tempfile.TemporaryDirectory() as probe:
            error = _tried(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe])
            if error is None:
                _tried(["umount", probe])
                return "mount", None
            why.append(f"mount -t tmpfs as root: {error}")
    if not shutil.which("unshare"):
        why.append("no unshare command for a user namespace")
    else:
        error = _tried(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"])
        if error is None:
            return "unshare", None
        why.append(f"user namespace (unshare -rm + mount): {error}")
    return None, "; ".join(why)


def test_a_full_disk_leaves_every_file_as_it_was(model_file, tiny_model, tmp_path):
    """On a real full disk (a 24 MB tmpfs) every writer raises ENOSPC naming its path, and leaves
    the previous version intact and no temporary behind.

    Mutation check: ``atomic_write`` that keeps its temporary file on failure (no unlink) -> fails.
    """
    route, why_not = _tmpfs_route()
    if route is None:
        pytest.skip(f"needs a tmpfs mounted as root or in a user namespace; here: {why_not}")
    _, path = model_file
    disk = tmp_path / "disk"
    disk.mkdir()
    child = [sys.executable, CHILD, "disk_full", str(path), tiny_model, str(disk)]
    if route == "mount":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)], check=True)
        try:
            res = subprocess.run(child, capture_output=True, text=True, check=False, env=CHILD_ENV)
        finally:
            subprocess.run(["umount", str(disk)], check=True)
    else:
        script = f'mount -t tmpfs -o size=24m tmpfs "{disk}" && exec "$@"'
        res = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", *child], capture_output=True, text=True,
                             check=False, env=CHILD_ENV)
    assert res.returncode == 0, res.stderr[-2000:]
    results = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(results) == {"save", "to_huggingface", "to_onnx", "checkpoint"}
    for name, r in results.items():
        assert r["error"] is not None, f"{name} wrote onto a full disk"
        assert r["error"]["type"] == "OSError" and r["error"]["errno"] == errno.ENOSPC, (name, r["error"])
        assert "disk is full" in r["error"]["message"] and r["path"] in r["error"]["message"], (name, r["error"])
        assert r["intact"], f"{name}: the previous version changed"
        assert r["left"] == [], f"{name} left {r['left']}"


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_enospc_injected_at_the_write_names_the_path(tmp_path, kind):
    # Where no tmpfs can be mounted this is the same guarantee, the error raised by the writer itself.
    target = tmp_path / ("model.bin" if kind == "file" else "folder")

    def first(tmp):
        if kind == "file":
            Path(tmp).write_bytes(b"old")
        else:
            (Path(tmp) / "a.txt").write_text("old")

    def full(tmp):
        if kind == "file":
            Path(tmp).write_bytes(b"part")
        else:
            (Path(tmp) / "a.txt").write_text("part")
        raise OSError(errno.ENOSPC, "No space left on device")

    write = atomic_write if kind == "file" else lambda p, w: atomic_dir(p, w, replace=True)
    write(target, first)
    with pytest.raises(OSError, match="disk is full") as info:
        write(target, full)
    assert info.value.errno == errno.ENOSPC and str(target) in str(info.value)
    assert (target.read_bytes() if kind == "file" else (target / "a.txt").read_bytes()) == b"old"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


# -- two processes, one path ----------------------------------------------------------------------
def test_two_processes_saving_to_one_path_leave_one_complete_model(tiny_model, toy_data, tmp_path):
    X, y = toy_data
    models = [TokenSparseClassifier(tiny_model, **{**FAST, "random_state": seed}).fit(X, y) for seed in (0, 1)]
    files = [m.save(tmp_path / f"source{i}.safetensors") for i, m in enumerate(models)]
    shared = tmp_path / "out" / "model.safetensors"
    shared.parent.mkdir()
    start = tmp_path / "start"
    procs = [subprocess.Popen([sys.executable, CHILD, "save", str(f), str(shared), "15", str(start)],
                              stderr=subprocess.PIPE, text=True, env=CHILD_ENV) for f in files]
    while len(list(tmp_path.glob("start.ready.*"))) < 2 and all(p.poll() is None for p in procs):
        time.sleep(0.01)  # both load their model first, then start together
    start.touch()
    for p in procs:
        _, err = p.communicate()
        assert p.returncode == 0, err[-2000:]
    assert [p.name for p in shared.parent.iterdir()] == ["model.safetensors"]  # no temporary left
    proba = TokenSparseClassifier.load(shared).predict_proba(X)
    assert any(np.array_equal(proba, m.predict_proba(X)) for m in models)
