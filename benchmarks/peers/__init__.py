"""The peers a user would pick instead, SetFit and FastFit, each fitted in its own environment.

A peer's package pins libraries of its own (FastFit 1.2.1 needs the transformers and datasets of
2024), so each runs in a virtual environment made from ``requirements-<peer>.txt`` beside this
file (``python -m benchmarks.peers setup``), in a child process (``child.py``) that answers JSON
lines. :class:`PeerReference` is that child behind ``fit`` / ``predict_proba`` / ``classes_``.
The backbone is the benchmark's own model files, handed to the peer as a local path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ..common import ROOT

HERE = Path(__file__).resolve().parent
PEERS = ("setfit", "fastfit")
#: where the peers' environments live (outside the working tree: several GB)
ENVS = Path(os.environ.get("SKSPARSEFT_PEER_ENVS") or ROOT.parent / "peers")


def python_of(peer):
    return ENVS / f"{peer}-venv" / "bin" / "python"


def requirements(peer):
    return HERE / f"requirements-{peer}.txt"


def setup(peers=PEERS):
    """Make each peer's environment (``python -m venv`` + ``pip install -r``), where it is missing."""
    for peer in peers:
        if python_of(peer).exists():
            continue
        ENVS.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(ENVS / f"{peer}-venv")], check=True)
        subprocess.run([str(python_of(peer)), "-m", "pip", "install", "-q", "-r", str(requirements(peer))], check=True)


class PeerReference:
    """A peer fitted in its own environment's process; ``fit_s_`` is the seconds its fit took there."""

    def __init__(self, peer, model, seed=0):
        self.peer, self.model, self.seed = peer, model, seed

    def _ask(self, request):
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"peer {self.peer} exited (code {self._proc.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"peer {self.peer}: {answer['error']}\n{answer.get('traceback', '')}")
        return answer

    def fit(self, X, y):
        from sksparseft.model.backbone import resolve_model_path

        python = python_of(self.peer)
        if not python.exists():
            raise FileNotFoundError(f"peer {self.peer} has no environment at {python.parent.parent}: "
                                    f"run python -m benchmarks.peers setup")
        self._proc = subprocess.Popen([str(python), str(HERE / "child.py")], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, cwd=str(ENVS))
        answer = self._ask({"fit": {"peer": self.peer, "X": list(X), "y": [str(v) for v in y],
                                    "model_path": str(resolve_model_path(self.model)), "seed": int(self.seed)}})
        self.fit_s_ = answer["fit_s"]
        self.versions_ = answer["versions"]
        self.n_trainable_params = answer["trainable_params"]
        # the peer saw labels as strings: map its columns back to the labels given
        by_text = {str(v): v for v in y}
        self.classes_ = np.asarray([by_text[c] for c in answer["classes"]], dtype=object)
        return self

    def predict_proba(self, X):
        return np.asarray(self._ask({"predict_proba": list(X)})["proba"])

    def close(self):
        if getattr(self, "_proc", None) is not None:
            self._proc.stdin.close()
            self._proc.wait()
            self._proc = None
